//! The states of SPEC §1 and the one map from each transitory state to the state it falls
//! to when its operation dies. Transitory states are owned by the operation slot: nothing
//! but an operation may set them.

use super::Invalid;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagementState {
    Managed,
    Unmanaged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AvailabilityStatus {
    Online,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupStatus {
    Validating,
    PreBackup,
    BackingUp,
    DeletingBackup,
    CompleteCentral,
    CompleteLocal,
    Failed,
    ValidateFailed,
    BackupPrepFailed,
    Unknown,
    DeleteFailed,
}

impl BackupStatus {
    /// The failure state a transitory state falls to; `None` for final states.
    pub fn failure_state(self) -> Option<BackupStatus> {
        match self {
            BackupStatus::Validating => Some(BackupStatus::ValidateFailed),
            BackupStatus::PreBackup => Some(BackupStatus::BackupPrepFailed),
            BackupStatus::BackingUp => Some(BackupStatus::Failed),
            BackupStatus::DeletingBackup => Some(BackupStatus::DeleteFailed),
            _ => None,
        }
    }

    pub fn is_transitory(self) -> bool {
        self.failure_state().is_some()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Validating => "validating",
            BackupStatus::PreBackup => "pre-backup",
            BackupStatus::BackingUp => "backing-up",
            BackupStatus::DeletingBackup => "deleting-backup",
            BackupStatus::CompleteCentral => "complete-central",
            BackupStatus::CompleteLocal => "complete-local",
            BackupStatus::Failed => "failed",
            BackupStatus::ValidateFailed => "validate-failed",
            BackupStatus::BackupPrepFailed => "backup-prep-failed",
            BackupStatus::Unknown => "unknown",
            BackupStatus::DeleteFailed => "delete-failed",
        }
    }

    const ALL: [BackupStatus; 11] = [
        BackupStatus::Validating,
        BackupStatus::PreBackup,
        BackupStatus::BackingUp,
        BackupStatus::DeletingBackup,
        BackupStatus::CompleteCentral,
        BackupStatus::CompleteLocal,
        BackupStatus::Failed,
        BackupStatus::ValidateFailed,
        BackupStatus::BackupPrepFailed,
        BackupStatus::Unknown,
        BackupStatus::DeleteFailed,
    ];

    /// A backup-status an operator may set through the inventory: a final state only.
    pub fn parse_final(field: &str, value: &str) -> Result<BackupStatus, Invalid> {
        let status = BackupStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| {
                let known: Vec<&str> = BackupStatus::ALL.iter().map(|s| s.as_str()).collect();
                Invalid::field(field, format!("expected one of {}", known.join(", ")))
            })?;
        if status.is_transitory() {
            return Err(Invalid::field(
                field,
                format!("'{value}' is set only by a subcloud-backup operation"),
            ));
        }
        Ok(status)
    }
}

impl fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a deploy state forbids besides the operations that claim the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forbids {
    Delete,
    RestoreAndDelete,
}

/// A deploy-status. Operators and other tooling set many states dcbackup only has to
/// recognise (SPEC §1 "…"), so this is an open set of lowercase, hyphenated words, with the
/// restore states it owns and the states that forbid a restore named here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeployStatus(String);

impl DeployStatus {
    pub const COMPLETE: &'static str = "complete";
    pub const PRE_RESTORE: &'static str = "pre-restore";
    pub const RESTORING: &'static str = "restoring";

    /// dcmanager's deploy states that forbid a restore or a delete of the subcloud from the
    /// inventory (SPEC §1; dcmanager's `INVALID_DEPLOY_STATES_FOR_RESTORE` and
    /// `INVALID_DEPLOY_STATES_FOR_DELETE`): one table, both rules read from it.
    const FORBIDDING: [(&'static str, Forbids); 23] = [
        ("pre-deploy", Forbids::Delete),
        ("creating", Forbids::RestoreAndDelete),
        ("pre-install", Forbids::RestoreAndDelete),
        ("installing", Forbids::RestoreAndDelete),
        ("pre-bootstrap", Forbids::RestoreAndDelete),
        ("bootstrapping", Forbids::RestoreAndDelete),
        ("pre-config", Forbids::RestoreAndDelete),
        ("configuring", Forbids::RestoreAndDelete),
        ("deploying", Forbids::Delete),
        ("aborting-install", Forbids::Delete),
        ("aborting-bootstrap", Forbids::Delete),
        ("aborting-config", Forbids::Delete),
        (DeployStatus::PRE_RESTORE, Forbids::RestoreAndDelete),
        (DeployStatus::RESTORING, Forbids::RestoreAndDelete),
        ("onsite-restoring", Forbids::RestoreAndDelete),
        ("pre-rehome", Forbids::RestoreAndDelete),
        ("rehoming", Forbids::RestoreAndDelete),
        ("rehome-pending", Forbids::Delete),
        ("reconfiguring-network", Forbids::Delete),
        ("pre-init-enroll", Forbids::RestoreAndDelete),
        ("initiating-enroll", Forbids::RestoreAndDelete),
        ("pre-enroll", Forbids::RestoreAndDelete),
        ("enrolling", Forbids::RestoreAndDelete),
    ];

    /// The deploy states in which a restore is refused.
    pub fn forbidding_restore() -> impl Iterator<Item = &'static str> {
        Self::FORBIDDING
            .iter()
            .filter(|(_, f)| *f == Forbids::RestoreAndDelete)
            .map(|(state, _)| *state)
    }

    /// The deploy states in which deleting the subcloud from the inventory is refused.
    pub fn forbidding_delete() -> impl Iterator<Item = &'static str> {
        Self::FORBIDDING.iter().map(|(state, _)| *state)
    }

    pub fn complete() -> DeployStatus {
        DeployStatus(Self::COMPLETE.to_owned())
    }

    pub fn pre_restore() -> DeployStatus {
        DeployStatus(Self::PRE_RESTORE.to_owned())
    }

    pub fn restoring() -> DeployStatus {
        DeployStatus(Self::RESTORING.to_owned())
    }

    /// A deploy-status an operator may set: any well-formed state except those only a
    /// restore operation sets.
    pub fn parse_settable(field: &str, value: &str) -> Result<DeployStatus, Invalid> {
        let well_formed = !value.is_empty()
            && value.len() <= 64
            && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if !well_formed {
            return Err(Invalid::field(
                field,
                format!("'{value}' is not a deploy state; expected a word like complete or install-failed"),
            ));
        }
        let status = DeployStatus(value.to_owned());
        if status.failure_state().is_some() {
            return Err(Invalid::field(
                field,
                format!("'{value}' is set only by a subcloud-backup restore operation"),
            ));
        }
        Ok(status)
    }

    /// The failure state a transitory restore state falls to; `None` otherwise.
    pub fn failure_state(&self) -> Option<DeployStatus> {
        match self.0.as_str() {
            Self::PRE_RESTORE => Some(DeployStatus("restore-prep-failed".to_owned())),
            Self::RESTORING => Some(DeployStatus("restore-failed".to_owned())),
            _ => None,
        }
    }

    pub fn forbids_restore(&self) -> bool {
        Self::forbidding_restore().any(|state| state == self.0)
    }

    pub fn forbids_delete(&self) -> bool {
        Self::forbidding_delete().any(|state| state == self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeployStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one of a closed set of kebab-case words, naming the choices when it fails.
pub(crate) fn parse_choice<T: serde::de::DeserializeOwned>(
    field: &str,
    value: &str,
    choices: &[&str],
) -> Result<T, Invalid> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|_| {
        Invalid::field(
            field,
            format!("'{value}' is not one of {}", choices.join(", ")),
        )
    })
}

impl ManagementState {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        parse_choice(field, value, &["managed", "unmanaged"])
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ManagementState::Managed => "managed",
            ManagementState::Unmanaged => "unmanaged",
        }
    }
}

impl AvailabilityStatus {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        parse_choice(field, value, &["online", "offline"])
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AvailabilityStatus::Online => "online",
            AvailabilityStatus::Offline => "offline",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transitory_backup_state_has_its_failure_state() {
        let map = [
            ("validating", "validate-failed"),
            ("pre-backup", "backup-prep-failed"),
            ("backing-up", "failed"),
            ("deleting-backup", "delete-failed"),
        ];
        for (from, to) in map {
            let s = BackupStatus::ALL
                .iter()
                .find(|s| s.as_str() == from)
                .unwrap();
            assert_eq!(s.failure_state().unwrap().as_str(), to);
        }
        let finals = BackupStatus::ALL
            .iter()
            .filter(|s| !s.is_transitory())
            .count();
        assert_eq!(finals, 7);
    }

    #[test]
    fn serde_names_match_the_wire_names() {
        for s in BackupStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn operators_cannot_set_transitory_states() {
        assert!(BackupStatus::parse_final("backup-status", "backing-up").is_err());
        assert!(BackupStatus::parse_final("backup-status", "failed").is_ok());
        assert!(BackupStatus::parse_final("backup-status", "bogus").is_err());
        assert!(DeployStatus::parse_settable("deploy-status", "restoring").is_err());
        assert!(DeployStatus::parse_settable("deploy-status", "install-failed").is_ok());
        assert!(DeployStatus::parse_settable("deploy-status", "Bad State").is_err());
    }

    #[test]
    fn restore_states() {
        let restoring = DeployStatus(DeployStatus::RESTORING.into());
        assert_eq!(
            restoring.failure_state().unwrap().as_str(),
            "restore-failed"
        );
        assert!(restoring.forbids_restore());
        assert!(!DeployStatus::complete().forbids_restore());
        assert_eq!(
            ManagementState::parse("management-state", "managed").unwrap(),
            ManagementState::Managed
        );
        assert!(AvailabilityStatus::parse("availability-status", "up").is_err());
    }

    /// dcmanager's two lists, verbatim (SPEC §1).
    #[test]
    fn deploy_states_forbidding_restore_and_delete_are_dcmanagers() {
        let restore = "creating pre-install installing pre-bootstrap bootstrapping pre-config \
            configuring pre-rehome rehoming pre-restore restoring onsite-restoring pre-init-enroll \
            initiating-enroll pre-enroll enrolling";
        let delete = "pre-deploy creating pre-install installing pre-bootstrap bootstrapping \
            pre-config configuring deploying aborting-install aborting-bootstrap aborting-config \
            pre-restore restoring onsite-restoring pre-rehome rehoming rehome-pending \
            reconfiguring-network pre-init-enroll initiating-enroll pre-enroll enrolling";
        let sorted = |states: &mut dyn Iterator<Item = &'static str>| {
            let mut v: Vec<&str> = states.collect();
            v.sort_unstable();
            v
        };
        let words = |list: &'static str| sorted(&mut list.split_whitespace());
        assert_eq!(
            sorted(&mut DeployStatus::forbidding_restore()),
            words(restore)
        );
        assert_eq!(
            sorted(&mut DeployStatus::forbidding_delete()),
            words(delete)
        );
        for state in words(delete) {
            let status = DeployStatus(state.to_owned());
            assert!(status.forbids_delete(), "{state}");
            assert_eq!(
                status.forbids_restore(),
                restore.split_whitespace().any(|s| s == state),
                "{state}"
            );
        }
        assert!(!DeployStatus::complete().forbids_delete());
    }
}
