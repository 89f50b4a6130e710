//! The attribute names of the tables, each written once: every expression, key and index
//! names attributes through these constants (dynamodb-lease's habit), so a rename is one edit
//! and a typo does not compile. Items are written and read whole through serde, so a name
//! here is also the serde name of the field it holds. Several tables share a name (`id`,
//! `updated_at`, `expires_at`): one constant serves them all.

use crate::domain::{ClaimedState, SlotState};

// ---- keys ------------------------------------------------------------------------------

/// The key of the subclouds, groups and schedules tables (a number).
pub const ID: &str = "id";
/// The key of the operations table; also the slot's holder on a subcloud.
pub const OP_ID: &str = "op_id";
/// The key of the names table: `<kind>#<name>`.
pub const NAME_KEY: &str = "name_key";
/// The key of the counters table.
pub const COUNTER: &str = "counter";
/// The key of the idempotency table.
pub const IDEM_KEY: &str = "idem_key";
/// The backups table's partition key; an operation's subcloud.
pub const SUBCLOUD_ID: &str = "subcloud_id";
/// The backups table's sort key: `<release>#<op_id>`.
pub const BACKUP_ID: &str = "backup_id";

// ---- subclouds ---------------------------------------------------------------------------

pub const NAME: &str = "name";
pub const DESCRIPTION: &str = "description";
pub const LOCATION: &str = "location";
pub const SOFTWARE_VERSION: &str = "software_version";
pub const MANAGEMENT_STATE: &str = "management_state";
pub const AVAILABILITY_STATUS: &str = "availability_status";
pub const DEPLOY_STATUS: &str = "deploy_status";
pub const BACKUP_STATUS: &str = "backup_status";
pub const BACKUP_DATETIME: &str = "backup_datetime";
pub const ERROR_DESCRIPTION: &str = "error_description";
pub const GROUP_ID: &str = "group_id";
pub const AGENT_URL: &str = "agent_url";
pub const CREATED_AT: &str = "created_at";
pub const UPDATED_AT: &str = "updated_at";
pub const CENTRAL_BACKUPS: &str = "central_backups";
pub const LOCAL_BACKUPS: &str = "local_backups";
// The operation slot (SPEC §3).
pub const OP_KIND: &str = "op_kind";
pub const OP_SINCE: &str = "op_since";
pub const OP_KEY: &str = "op_key";
pub const OP_BYTES: &str = "op_bytes";
pub const OP_OPTIONS: &str = "op_options";
pub const OP_REQUEST: &str = "op_request";
/// The value the claim replaced in its state's attribute ("" for none), kept so that a claim
/// whose answer was lost, and which is sent again, still knows it.
pub const OP_PRIOR: &str = "op_prior";
pub const LEASE_EXPIRES_AT: &str = "lease_expires_at";
/// Set (to [`super::LEASE_HELD`]) while a lease is held: the expiring-leases index's key.
pub const LEASE_HELD: &str = "lease_held";
pub const FENCE: &str = "fence";
pub const SEAT: &str = "seat";
pub const POLL_SEQ: &str = "poll_seq";
pub const POLL_TOKEN: &str = "poll_token";
pub const ORPHAN_UPLOAD: &str = "orphan_upload";

// ---- groups ----------------------------------------------------------------------------

pub const UPDATE_APPLY_TYPE: &str = "update_apply_type";
pub const MAX_PARALLEL_SUBCLOUDS: &str = "max_parallel_subclouds";
pub const SUBCLOUD_COUNT: &str = "subcloud_count";
/// A group's seats taken (its operations running on agents).
pub const RUNNING: &str = "running";

// ---- counters ----------------------------------------------------------------------------

pub const VALUE: &str = "value";

// ---- operations --------------------------------------------------------------------------

pub const STATE: &str = "state";
pub const ERROR: &str = "error";
pub const STARTED_AT: &str = "started_at";
pub const FINISHED_AT: &str = "finished_at";
pub const UPLOAD_ID: &str = "upload_id";
pub const BYTES: &str = "bytes";
pub const RETENTION: &str = "retention";
/// When the table's TTL deletes the item (operations, idempotency keys).
pub const EXPIRES_AT: &str = "expires_at";

// ---- idempotency keys --------------------------------------------------------------------

pub const FINGERPRINT: &str = "fingerprint";
pub const STATUS: &str = "status";
pub const CHUNKS: &str = "chunks";
pub const BODY: &str = "body";

// ---- schedules ---------------------------------------------------------------------------

/// Set on every schedule the scheduler should look at: the due-schedules index's key.
pub const DUE: &str = "due";
pub const NEXT_RUN: &str = "next_run";
pub const ENABLED: &str = "enabled";
pub const LAST_RUN: &str = "last_run";
/// The due time of a schedule's last recorded firing.
pub const LAST_RUN_DUE_AT: &str = "last_run.due_at";
/// Bumped by every write of a schedule.
pub const VERSION: &str = "version";

impl ClaimedState {
    /// The subcloud attribute this state is a value of.
    pub(crate) fn attribute(&self) -> &'static str {
        match self {
            ClaimedState::Backup(_) => BACKUP_STATUS,
            ClaimedState::Deploy(_) => DEPLOY_STATUS,
        }
    }
}

impl SlotState {
    /// The subcloud attribute this state is a value of.
    pub(crate) fn attribute(&self) -> &'static str {
        match self {
            SlotState::Backup(_) => BACKUP_STATUS,
            SlotState::Deploy(_) => DEPLOY_STATUS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Subcloud;

    /// The names are the fields serde writes: a subcloud with every optional field set has
    /// each of its attributes.
    #[test]
    fn subcloud_attributes_are_its_serde_fields() {
        let item = serde_json::json!({
            "id": 1, "name": "sc1", "description": "d", "location": "l",
            "software_version": "24.09", "management_state": "managed",
            "availability_status": "online", "deploy_status": "complete",
            "backup_status": "complete-central", "backup_datetime": "t",
            "error_description": "No errors present", "region_name": "r", "group_id": 1,
            "agent_url": "http://10.0.0.1:8443", "created_at": "t", "updated_at": "t",
            "op_id": "6f1c1e2a-8d4b-4a57-9b1e-0c2f3d4e5f60", "op_kind": "create",
            "op_since": "t", "lease_expires_at": 1, "seat": 1, "poll_seq": 1,
            "poll_token": "x", "op_key": "k", "orphan_upload": "6f1c1e2a-8d4b-4a57-9b1e-0c2f3d4e5f60",
            "fence": 1, "central_backups": ["24.09"], "local_backups": ["24.09"],
            "op_options": {"local_only": false, "registry_images": false},
            "op_request": {"requested_by": "admin", "expires_at": 1}, "op_prior": "",
        });
        let sc: Subcloud = serde_json::from_value(item).unwrap();
        let written = serde_json::to_value(&sc).unwrap();
        for attr in [
            ID,
            NAME,
            DESCRIPTION,
            LOCATION,
            SOFTWARE_VERSION,
            MANAGEMENT_STATE,
            AVAILABILITY_STATUS,
            DEPLOY_STATUS,
            BACKUP_STATUS,
            BACKUP_DATETIME,
            ERROR_DESCRIPTION,
            GROUP_ID,
            AGENT_URL,
            CREATED_AT,
            UPDATED_AT,
            OP_ID,
            OP_KIND,
            OP_SINCE,
            LEASE_EXPIRES_AT,
            SEAT,
            POLL_SEQ,
            POLL_TOKEN,
            OP_KEY,
            OP_OPTIONS,
            OP_REQUEST,
            OP_PRIOR,
            ORPHAN_UPLOAD,
            FENCE,
            CENTRAL_BACKUPS,
            LOCAL_BACKUPS,
        ] {
            assert!(
                written.get(attr).is_some(),
                "{attr} is not a subcloud field"
            );
        }
    }
}
