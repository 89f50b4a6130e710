//! The writes a worker makes while it drives an operation. Each is conditional on the
//! operation still holding the slot — same op id, same fence, lease not expired — so a
//! worker that lost its slot (lease expired, slot recovered or claimed again) changes
//! nothing. Finishing frees the slot in the same write that records the outcome.

use super::attributes::{
    BACKUP_DATETIME, BYTES, CENTRAL_BACKUPS, ERROR, ERROR_DESCRIPTION, FENCE, FINISHED_AT, ID,
    LEASE_EXPIRES_AT, LOCAL_BACKUPS, OP_BYTES, OP_ID, POLL_SEQ, POLL_TOKEN, RETENTION, SEAT,
    STARTED_AT, STATE, UPDATED_AT, UPLOAD_ID,
};
use super::{conditional, failed_conditions, n, s, to_value, Expr, StoreError};
use crate::domain::{
    epoch_now, timestamp_now, ByteProgress, ClaimedState, OpId, OpState, Release, Retired,
    SlotState,
};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

/// The operation a worker holds a subcloud's slot for.
#[derive(Debug, Clone)]
pub struct Holder {
    pub subcloud_id: u64,
    pub op_id: OpId,
    pub fence: u64,
}

/// Which set of releases a finished operation adds to or removes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupSet {
    Central,
    Local,
}

impl BackupSet {
    fn attribute(self) -> &'static str {
        match self {
            BackupSet::Central => CENTRAL_BACKUPS,
            BackupSet::Local => LOCAL_BACKUPS,
        }
    }
}

/// How an operation ends, as written to the subcloud with the slot's release.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The state the operation leaves: `Backup(None)` clears backup-status and
    /// backup-datetime (no backup is left).
    pub state: SlotState,
    pub backup_datetime: Option<String>,
    /// Set on failure; on success `error-description` goes back to "No errors present".
    pub error: Option<String>,
    pub add_release: Option<(BackupSet, Release)>,
    pub remove_release: Option<(BackupSet, Release)>,
}

impl Outcome {
    /// An ending in `state` that changes nothing else but what every ending does.
    pub fn ending(state: SlotState) -> Outcome {
        Outcome {
            state,
            backup_datetime: None,
            error: None,
            add_release: None,
            remove_release: None,
        }
    }
}

/// The poll chain handed from the live message `from` (its `attempt`) to the one sent with
/// `attempt = from + 1` and `token`.
#[derive(Debug, Clone)]
pub struct HandOff {
    pub from: u32,
    pub token: String,
}

/// An expression conditional on `holder` still holding the slot at `now`: same operation,
/// same fence, lease not expired.
fn still_ours(holder: &Holder, now: u64) -> Expr {
    let mut e = Expr::new();
    e.eq(OP_ID, s(holder.op_id.as_str()))
        .eq(FENCE, n(holder.fence))
        .gt(LEASE_EXPIRES_AT, n(now));
    e
}

/// A set of releases as a string set.
fn release_set<'a>(releases: impl IntoIterator<Item = &'a Release>) -> AttributeValue {
    AttributeValue::Ss(
        releases
            .into_iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
    )
}

impl super::Store {
    /// Moves the operation's state on and extends its lease. Returns false if the slot is
    /// no longer this operation's (or, with `hand_off`, the chain was handed on already).
    pub async fn advance(
        &self,
        holder: &Holder,
        state: &ClaimedState,
        now: u64,
        lease_seconds: u64,
        hand_off: Option<&HandOff>,
    ) -> Result<bool, StoreError> {
        self.progress(holder, Some((state, now + lease_seconds)), now, hand_off)
            .await
    }

    /// Hands the poll chain on without moving the state or the lease (the agent did not
    /// answer: if it stays away the lease runs out). False as for `advance`.
    pub async fn hand_on(
        &self,
        holder: &Holder,
        now: u64,
        hand_off: &HandOff,
    ) -> Result<bool, StoreError> {
        self.progress(holder, None, now, Some(hand_off)).await
    }

    async fn progress(
        &self,
        holder: &Holder,
        state_and_lease: Option<(&ClaimedState, u64)>,
        now: u64,
        hand_off: Option<&HandOff>,
    ) -> Result<bool, StoreError> {
        let mut e = still_ours(holder, now);
        e.set(UPDATED_AT, s(timestamp_now()));
        if let Some((state, lease)) = state_and_lease {
            e.set(state.attribute(), s(state.as_str()))
                .set(LEASE_EXPIRES_AT, n(lease));
        }
        if let Some(hand_off) = hand_off {
            // Each step of the chain is written once: of two deliveries of one message, only
            // the first to get here hands it on.
            let from = (hand_off.from != 0).then(|| n(hand_off.from));
            e.eq_or_absent(POLL_SEQ, from)
                .set(POLL_SEQ, n(hand_off.from + 1))
                .set(POLL_TOKEN, s(&hand_off.token));
        }
        let result = e
            .update_item(self.subcloud_update(holder.subcloud_id))
            .send()
            .await;
        conditional(result, "UpdateItem advance")
    }

    /// Removes releases from one of the subcloud's backup sets while the operation still
    /// holds the slot (retention emptied them). False if the slot is no longer its own.
    pub async fn remove_releases(
        &self,
        holder: &Holder,
        set: BackupSet,
        releases: &[Release],
    ) -> Result<bool, StoreError> {
        let result = still_ours(holder, epoch_now())
            .delete(set.attribute(), release_set(releases))
            .update_item(self.subcloud_update(holder.subcloud_id))
            .send()
            .await;
        conditional(result, "UpdateItem remove releases")
    }

    /// Records on an operation which backups its schedule's retention removed.
    pub async fn record_retention(
        &self,
        op_id: &OpId,
        retired: &[Retired],
    ) -> Result<(), StoreError> {
        let value = to_value("retention", retired)?;
        Expr::new()
            .append(RETENTION, value)
            .update_item(self.operation_update(op_id))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UpdateItem operations retention", e))?;
        Ok(())
    }

    /// Records how the operation ended and frees the slot, in one conditional write.
    /// `seat`: the group whose seat the operation holds, given back in the same write.
    pub async fn finish(
        &self,
        holder: &Holder,
        outcome: &Outcome,
        state: OpState,
        seat: Option<u64>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let at = timestamp_now();
        let mut e = still_ours(holder, now);
        e.set(UPDATED_AT, s(&at));
        let attribute = outcome.state.attribute();
        match outcome.state.as_str() {
            Some(state) => e.set(attribute, s(state)),
            None => e.remove(attribute).remove(BACKUP_DATETIME),
        };
        e.set_opt(BACKUP_DATETIME, outcome.backup_datetime.as_deref().map(s));
        let error = outcome.error.as_deref().unwrap_or(crate::domain::NO_ERRORS);
        e.set(ERROR_DESCRIPTION, s(error));
        if let Some((set, release)) = &outcome.add_release {
            e.add(set.attribute(), release_set([release]));
        }
        if let Some((set, release)) = &outcome.remove_release {
            e.delete(set.attribute(), release_set([release]));
        }
        super::slot::free_slot(&mut e);
        self.end_operation(
            (holder.subcloud_id, e),
            &holder.op_id,
            state,
            outcome.error.as_deref(),
            seat,
            &at,
        )
        .await
    }

    /// Ends an operation in one transaction: the subcloud's update (its id and expression,
    /// whose condition decides),
    /// the operation record's final state and finish time, and the release of its seat.
    /// `at` is the time the subcloud's update records too, so the next claim — which must
    /// come after the subcloud's last write — also comes after this finish time.
    /// Returns false, writing nothing, if the subcloud's condition failed.
    pub(crate) async fn end_operation(
        &self,
        (subcloud_id, mut subcloud): (u64, Expr),
        op_id: &OpId,
        state: OpState,
        error: Option<&str>,
        seat: Option<u64>,
        at: &str,
    ) -> Result<bool, StoreError> {
        // The seat must be the one being given back.
        subcloud.eq_or_absent(SEAT, seat.map(n));
        let subcloud = subcloud.transact_update(&self.res.subclouds_table, (ID, n(subcloud_id)))?;
        let record = Expr::new()
            .set(STATE, s(state_name(state)))
            .set_opt(ERROR, error.map(s))
            .set(FINISHED_AT, s(at))
            .set(UPDATED_AT, s(at))
            .transact_update(&self.res.operations_table, (OP_ID, s(op_id.as_str())))?;
        let mut tx = self
            .ddb
            .transact_write_items()
            .transact_items(subcloud)
            .transact_items(record);
        if let Some(group) = seat {
            for item in self.release_seat(group)? {
                tx = tx.transact_items(item);
            }
        }
        Ok(failed_conditions(tx.send().await)?.is_none())
    }

    /// Marks an operation's record running, since now. Only a queued operation starts: a
    /// duplicate job cannot reopen a finished one.
    pub async fn set_operation_running(&self, op_id: &OpId) -> Result<(), StoreError> {
        let now = timestamp_now();
        let result = Expr::new()
            .exists(OP_ID)
            .eq(STATE, s(state_name(OpState::Queued)))
            .set(STATE, s(state_name(OpState::Running)))
            .set(UPDATED_AT, s(&now))
            .set(STARTED_AT, s(&now))
            .update_item(self.operation_update(op_id))
            .send()
            .await;
        conditional(result, "UpdateItem operations").map(drop)
    }
}

impl super::Store {
    /// Records a running backup's progress in bytes on its operation record; a record no
    /// longer running (a late or duplicate poll) is left as it is.
    pub async fn set_operation_bytes(
        &self,
        op_id: &OpId,
        bytes: &ByteProgress,
    ) -> Result<(), StoreError> {
        let result = Expr::new()
            .exists(OP_ID)
            .eq(STATE, s(state_name(OpState::Running)))
            .set(BYTES, to_value("byte progress", bytes)?)
            .set(UPDATED_AT, s(timestamp_now()))
            .update_item(self.operation_update(op_id))
            .send()
            .await;
        conditional(result, "UpdateItem operations").map(drop)
    }

    /// An update of the subcloud item `id`, to give an expression to.
    pub(crate) fn subcloud_update(&self, id: u64) -> UpdateItemFluentBuilder {
        self.ddb
            .update_item()
            .table_name(&self.res.subclouds_table)
            .key(ID, n(id))
    }

    /// An update of the operation record `op_id`, to give an expression to.
    pub(crate) fn operation_update(&self, op_id: &OpId) -> UpdateItemFluentBuilder {
        self.ddb
            .update_item()
            .table_name(&self.res.operations_table)
            .key(OP_ID, s(op_id.as_str()))
    }
}

fn state_name(state: OpState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What became of recording an operation's upload id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadRecord {
    /// Recorded: the operation's upload is the one given.
    Recorded,
    /// Another delivery recorded one first: the operation's upload is this one.
    Existing(String),
    /// The operation has no record to keep it on.
    NoRecord,
}

impl super::Store {
    /// Records a central backup's multipart upload on its operation record, once: of two
    /// deliveries that each created one, the first to record it wins.
    pub async fn record_upload(
        &self,
        op_id: &OpId,
        upload_id: &str,
    ) -> Result<UploadRecord, StoreError> {
        let result = Expr::new()
            .exists(OP_ID)
            .not_exists(UPLOAD_ID)
            .set(UPLOAD_ID, s(upload_id))
            .set(UPDATED_AT, s(timestamp_now()))
            .update_item(self.operation_update(op_id))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(UploadRecord::Recorded),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => Ok(failed
                    .item()
                    .and_then(|old| old.get(UPLOAD_ID))
                    .and_then(|v| v.as_s().ok())
                    .map_or(UploadRecord::NoRecord, |id| {
                        UploadRecord::Existing(id.clone())
                    })),
                _ => Err(StoreError::from_sdk("UpdateItem operations upload", e)),
            },
        }
    }

    /// Shows a running backup's progress in bytes on its subcloud (`operation.bytes`), while
    /// the operation still holds the slot.
    pub async fn set_slot_bytes(
        &self,
        holder: &Holder,
        bytes: &ByteProgress,
    ) -> Result<bool, StoreError> {
        let result = still_ours(holder, epoch_now())
            .set(OP_BYTES, to_value("byte progress", bytes)?)
            .update_item(self.subcloud_update(holder.subcloud_id))
            .send()
            .await;
        conditional(result, "UpdateItem subcloud bytes")
    }
}
