//! The attribute names of the tables, each written once: every expression names attributes
//! through these constants (dynamodb-lease's habit), so a rename is one edit and a typo does
//! not compile. Items are written and read whole through serde, so a name here is also the
//! serde name of the field it holds.

use crate::domain::{ClaimedState, SlotState};

/// The subclouds table.
pub(crate) mod subcloud {
    pub const BACKUP_STATUS: &str = "backup_status";
    pub const BACKUP_DATETIME: &str = "backup_datetime";
    pub const DEPLOY_STATUS: &str = "deploy_status";
}

impl ClaimedState {
    /// The subcloud attribute this state is a value of.
    pub(crate) fn attribute(&self) -> &'static str {
        match self {
            ClaimedState::Backup(_) => subcloud::BACKUP_STATUS,
            ClaimedState::Deploy(_) => subcloud::DEPLOY_STATUS,
        }
    }
}

impl SlotState {
    /// The subcloud attribute this state is a value of.
    pub(crate) fn attribute(&self) -> &'static str {
        match self {
            SlotState::Backup(_) => subcloud::BACKUP_STATUS,
            SlotState::Deploy(_) => subcloud::DEPLOY_STATUS,
        }
    }
}
