//! The domain of SPEC §1: subclouds, groups, the names and references that address them,
//! and the backup/deploy state machine. Every value here is parsed once at the edge; the
//! constructors are the only way in, so nothing downstream re-checks strings.

mod group;
mod names;
mod operation;
mod schedule;
mod state;
mod subcloud;

pub use dcbackup_protocol::Release;
pub use group::{ApplyType, Group, GroupPatch, NewGroup, DEFAULT_GROUP_ID, DEFAULT_GROUP_NAME};
pub use names::{AgentUrl, Name, Ref};
pub use operation::{
    check_values_fit, without_secrets, ByteProgress, ClaimedState, OpId, OpKind, OpOptions,
    OpRequest, OpState, Operation, Retired, SlotState,
};
pub use schedule::{CronSpec, FiringState, LastRun, Schedule, ScheduleTarget, Skipped};
pub use state::{AvailabilityStatus, BackupStatus, DeployStatus, ManagementState};
pub use subcloud::{NetworkAddress, NewSubcloud, SlotHolder, Subcloud, SubcloudPatch, NO_ERRORS};

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

impl From<dcbackup_protocol::InvalidRelease> for Invalid {
    fn from(invalid: dcbackup_protocol::InvalidRelease) -> Self {
        Invalid::field(&invalid.field, &invalid)
    }
}

const TIMESTAMP: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
);

/// Wall-clock timestamps in the form dcmanager writes them (`2024-05-01 12:00:00.123456`).
pub fn timestamp_now() -> String {
    timestamp(time::OffsetDateTime::now_utc())
}

/// A Unix time (seconds) in dcmanager's timestamp form.
pub fn timestamp_of_epoch(seconds: u64) -> String {
    let at = i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    timestamp(at)
}

/// The first timestamp after `earlier` (one microsecond on), or now if that is later: for a
/// write that must be recorded after another whatever the clocks of the two writers say.
pub fn timestamp_after(earlier: &str) -> String {
    let now = timestamp_now();
    let next = time::PrimitiveDateTime::parse(earlier, TIMESTAMP)
        .map(|at| timestamp(at.assume_utc() + time::Duration::microseconds(1)));
    match next {
        Ok(next) if next > now => next,
        _ => now,
    }
}

fn timestamp(at: time::OffsetDateTime) -> String {
    at.format(TIMESTAMP)
        .expect("a UTC timestamp always formats")
}

/// The SHA-256 of a text, in hex: for keys that must not collide and must not reveal
/// what they were made from.
pub fn digest_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch: the clock leases are measured by.
pub fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
