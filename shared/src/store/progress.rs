//! The writes a worker makes while it drives an operation. Each is conditional on the
//! operation still holding the slot — same op id, same fence, lease not expired — so a
//! worker that lost its slot (lease expired, slot recovered or claimed again) changes
//! nothing. Finishing frees the slot in the same write that records the outcome.

use super::attributes::subcloud::BACKUP_DATETIME;
use super::{conditional, failed_conditions, n, s, Item, StoreError};
use crate::domain::{
    epoch_now, timestamp_now, ByteProgress, ClaimedState, OpId, OpState, Release, Retired,
    SlotState,
};
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use std::collections::HashMap;

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
            BackupSet::Central => "central_backups",
            BackupSet::Local => "local_backups",
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

const STILL_OURS: &str = "op_id = :op AND fence = :fence AND lease_expires_at > :now";

fn still_ours(holder: &Holder, now: u64) -> Item {
    let mut values: Item = HashMap::new();
    values.insert(":op".into(), s(holder.op_id.as_str()));
    values.insert(":fence".into(), n(holder.fence));
    values.insert(":now".into(), n(now));
    values
}

impl super::Inventory {
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
        let mut values = still_ours(holder, now);
        values.insert(":at".into(), s(timestamp_now()));
        let mut sets = vec!["updated_at = :at".to_owned()];
        let mut condition = STILL_OURS.to_owned();
        if let Some((state, lease)) = state_and_lease {
            values.insert(":state".into(), s(state.as_str()));
            values.insert(":lease".into(), n(lease));
            sets.push(format!("{} = :state", state.attribute()));
            sets.push("lease_expires_at = :lease".to_owned());
        }
        if let Some(hand_off) = hand_off {
            // Each step of the chain is written once: of two deliveries of one message, only
            // the first to get here hands it on.
            if hand_off.from == 0 {
                condition.push_str(" AND attribute_not_exists(poll_seq)");
            } else {
                values.insert(":from".into(), n(hand_off.from));
                condition.push_str(" AND poll_seq = :from");
            }
            values.insert(":next".into(), n(hand_off.from + 1));
            values.insert(":token".into(), s(&hand_off.token));
            sets.push("poll_seq = :next, poll_token = :token".to_owned());
        }
        let result = self
            .ddb
            .update_item()
            .table_name(&self.res.subclouds_table)
            .key("id", n(holder.subcloud_id))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
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
        let mut values = still_ours(holder, epoch_now());
        values.insert(
            ":gone".into(),
            aws_sdk_dynamodb::types::AttributeValue::Ss(
                releases.iter().map(|r| r.as_str().to_owned()).collect(),
            ),
        );
        let result = self
            .ddb
            .update_item()
            .table_name(&self.res.subclouds_table)
            .key("id", n(holder.subcloud_id))
            .update_expression(format!("DELETE {} :gone", set.attribute()))
            .condition_expression(STILL_OURS)
            .set_expression_attribute_values(Some(values))
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
        let value = serde_dynamo::to_attribute_value(retired)
            .map_err(|e| StoreError::Failed(format!("retention does not encode: {e}")))?;
        self.ddb
            .update_item()
            .table_name(&self.res.operations_table)
            .key("op_id", s(op_id.as_str()))
            .update_expression(
                "SET retention = list_append(if_not_exists(retention, :none), :retired)",
            )
            .expression_attribute_values(":retired", value)
            .expression_attribute_values(
                ":none",
                aws_sdk_dynamodb::types::AttributeValue::L(vec![]),
            )
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
        let mut values = still_ours(holder, now);
        let at = timestamp_now();
        values.insert(":at".into(), s(&at));
        let mut sets = vec!["updated_at = :at".to_owned()];
        let mut removes = vec![super::SLOT_ATTRIBUTES];
        let mut adds = Vec::new();
        let mut deletes = Vec::new();
        let attribute = outcome.state.attribute();
        match outcome.state.as_str() {
            Some(state) => {
                values.insert(":state".into(), s(state));
                sets.push(format!("{attribute} = :state"));
            }
            None => removes.extend([attribute, BACKUP_DATETIME]),
        }
        if let Some(at) = &outcome.backup_datetime {
            values.insert(":datetime".into(), s(at));
            sets.push("backup_datetime = :datetime".into());
        }
        let error = outcome.error.as_deref().unwrap_or(crate::domain::NO_ERRORS);
        values.insert(":error".into(), s(error));
        sets.push("error_description = :error".into());
        if let Some((set, release)) = &outcome.add_release {
            values.insert(
                ":added".into(),
                aws_sdk_dynamodb::types::AttributeValue::Ss(vec![release.as_str().to_owned()]),
            );
            adds.push(format!("{} :added", set.attribute()));
        }
        if let Some((set, release)) = &outcome.remove_release {
            values.insert(
                ":removed".into(),
                aws_sdk_dynamodb::types::AttributeValue::Ss(vec![release.as_str().to_owned()]),
            );
            deletes.push(format!("{} :removed", set.attribute()));
        }
        let mut expression = format!("SET {} REMOVE {}", sets.join(", "), removes.join(", "));
        if !adds.is_empty() {
            expression.push_str(&format!(" ADD {}", adds.join(", ")));
        }
        if !deletes.is_empty() {
            expression.push_str(&format!(" DELETE {}", deletes.join(", ")));
        }
        let subcloud = Update::builder()
            .table_name(&self.res.subclouds_table)
            .key("id", n(holder.subcloud_id))
            .update_expression(expression)
            .condition_expression(STILL_OURS)
            .set_expression_attribute_values(Some(values));
        self.end_operation(
            subcloud,
            &holder.op_id,
            state,
            outcome.error.as_deref(),
            seat,
            &at,
        )
        .await
    }

    /// Ends an operation in one transaction: the subcloud's update (whose condition decides),
    /// the operation record's final state and finish time, and the release of its seat.
    /// `at` is the time the subcloud's update records too, so the next claim — which must
    /// come after the subcloud's last write — also comes after this finish time.
    /// Returns false, writing nothing, if the subcloud's condition failed.
    pub(crate) async fn end_operation(
        &self,
        subcloud: aws_sdk_dynamodb::types::builders::UpdateBuilder,
        op_id: &OpId,
        state: OpState,
        error: Option<&str>,
        seat: Option<u64>,
        at: &str,
    ) -> Result<bool, StoreError> {
        let subcloud = match seat {
            // The seat must be the one being given back.
            Some(group) => {
                let condition = subcloud
                    .get_condition_expression()
                    .clone()
                    .unwrap_or_default();
                subcloud
                    .condition_expression(format!("{condition} AND seat = :seat"))
                    .expression_attribute_values(":seat", n(group))
            }
            None => {
                let condition = subcloud
                    .get_condition_expression()
                    .clone()
                    .unwrap_or_default();
                subcloud.condition_expression(format!("{condition} AND attribute_not_exists(seat)"))
            }
        };
        let subcloud = subcloud
            .build()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        let mut record = Update::builder()
            .table_name(&self.res.operations_table)
            .key("op_id", s(op_id.as_str()))
            .update_expression("SET #state = :state, finished_at = :at, updated_at = :at")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state_name(state)))
            .expression_attribute_values(":at", s(at));
        if let Some(error) = error {
            record = record
                .update_expression(
                    "SET #state = :state, #error = :error, finished_at = :at, updated_at = :at",
                )
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":error", s(error));
        }
        let record = record
            .build()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        let mut tx = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(subcloud).build())
            .transact_items(TransactWriteItem::builder().update(record).build());
        if let Some(group) = seat {
            for item in self.release_seat(group)? {
                tx = tx.transact_items(item);
            }
        }
        Ok(failed_conditions(tx.send().await)?.is_none())
    }

    /// Moves an operation record on (running, succeeded, failed with why).
    pub async fn set_operation_state(
        &self,
        op_id: &OpId,
        state: OpState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let state = state_name(state);
        let mut update = self
            .ddb
            .update_item()
            .table_name(&self.res.operations_table)
            .key("op_id", s(op_id.as_str()))
            .condition_expression("attribute_exists(op_id)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state))
            .expression_attribute_values(":now", s(timestamp_now()));
        update = match error {
            Some(error) => update
                .update_expression("SET #state = :state, #error = :error, updated_at = :now")
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":error", s(error)),
            // Only a queued operation starts: a duplicate job cannot reopen a finished one.
            None => update
                .update_expression("SET #state = :state, started_at = :now, updated_at = :now")
                .condition_expression("attribute_exists(op_id) AND #state = :queued")
                .expression_attribute_values(":queued", s(state_name(OpState::Queued))),
        };
        match update.send().await {
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::from_sdk("UpdateItem operations", e))
            }
            _ => Ok(()),
        }
    }
}

impl super::Inventory {
    /// Records a running backup's progress in bytes on its operation record; a record no
    /// longer running (a late or duplicate poll) is left as it is.
    pub async fn set_operation_bytes(
        &self,
        op_id: &OpId,
        bytes: &ByteProgress,
    ) -> Result<(), StoreError> {
        let value = serde_dynamo::to_attribute_value(bytes)
            .map_err(|e| StoreError::Failed(format!("byte progress does not encode: {e}")))?;
        let update = self
            .ddb
            .update_item()
            .table_name(&self.res.operations_table)
            .key("op_id", s(op_id.as_str()))
            .update_expression("SET #bytes = :bytes, updated_at = :now")
            .condition_expression("attribute_exists(op_id) AND #state = :running")
            .expression_attribute_names("#bytes", "bytes")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":bytes", value)
            .expression_attribute_values(":now", s(timestamp_now()))
            .expression_attribute_values(":running", s(state_name(OpState::Running)));
        match update.send().await {
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::from_sdk("UpdateItem operations", e))
            }
            _ => Ok(()),
        }
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

impl super::Inventory {
    /// Records a central backup's multipart upload on its operation record, once: of two
    /// deliveries that each created one, the first to record it wins.
    pub async fn record_upload(
        &self,
        op_id: &OpId,
        upload_id: &str,
    ) -> Result<UploadRecord, StoreError> {
        let result = self
            .ddb
            .update_item()
            .table_name(&self.res.operations_table)
            .key("op_id", s(op_id.as_str()))
            .update_expression("SET upload_id = :upload, updated_at = :now")
            .condition_expression("attribute_exists(op_id) AND attribute_not_exists(upload_id)")
            .expression_attribute_values(":upload", s(upload_id))
            .expression_attribute_values(":now", s(timestamp_now()))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(UploadRecord::Recorded),
            Err(e) => match e.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                        failed,
                    ),
                ) => Ok(failed
                    .item()
                    .and_then(|old| old.get("upload_id"))
                    .and_then(|v| v.as_s().ok())
                    .map_or(UploadRecord::NoRecord, |id| UploadRecord::Existing(id.clone()))),
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
        let value = serde_dynamo::to_attribute_value(bytes)
            .map_err(|e| StoreError::Failed(format!("byte progress does not encode: {e}")))?;
        let mut values = still_ours(holder, epoch_now());
        values.insert(":bytes".into(), value);
        let result = self
            .ddb
            .update_item()
            .table_name(&self.res.subclouds_table)
            .key("id", n(holder.subcloud_id))
            .update_expression("SET op_bytes = :bytes")
            .condition_expression(STILL_OURS)
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        conditional(result, "UpdateItem subcloud bytes")
    }
}
