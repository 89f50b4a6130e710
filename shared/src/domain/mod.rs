//! The domain of SPEC §1: subclouds, groups, the names and references that address them,
//! and the backup/deploy state machine. Every value here is parsed once at the edge; the
//! constructors are the only way in, so nothing downstream re-checks strings.

mod group;
mod names;
mod state;
mod subcloud;

pub use group::{ApplyType, Group, GroupPatch, NewGroup, DEFAULT_GROUP_ID, DEFAULT_GROUP_NAME};
pub use names::{AgentUrl, Name, Ref, Release};
pub use state::{AvailabilityStatus, BackupStatus, DeployStatus, ManagementState};
pub use subcloud::{NetworkAddress, NewSubcloud, Subcloud, SubcloudPatch};

/// Why a value given by a caller is not acceptable. The message names the field and says
/// what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn field(field: &str, why: impl std::fmt::Display) -> Self {
        Invalid(format!("Invalid value for '{field}': {why}"))
    }
}

/// Wall-clock timestamps in the form dcmanager writes them (`2024-05-01 12:00:00.123456`).
pub fn timestamp_now() -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .expect("a UTC timestamp always formats")
}
