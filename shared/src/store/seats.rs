//! Seats: how many operations of a group (its `max_parallel_subclouds`) and of the whole
//! system (a configured cap) run at once. A worker takes a seat before it starts an agent
//! job and the operation gives it back in the same transaction that ends it, so the counts
//! cannot drift from what runs. A job that finds no seat waits (is delayed) and keeps its
//! slot.

use super::{failed_conditions, n, s, Holder, StoreError};
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

/// The counter of the global cap, in the counters table.
const RUNNING_COUNTER: &str = "running";

#[derive(Debug, PartialEq, Eq)]
pub enum Seat {
    Taken,
    /// The group or the system is at its cap: try again later.
    Full,
    /// The slot is no longer this operation's.
    Lost,
}

fn update(
    builder: aws_sdk_dynamodb::types::builders::UpdateBuilder,
) -> Result<TransactWriteItem, StoreError> {
    let update: Update = builder
        .build()
        .map_err(|e| StoreError::Failed(e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

impl super::Inventory {
    /// Takes a seat in `group` (and one of `max_running` in the system) for the operation,
    /// extending its lease.
    pub async fn take_seat(
        &self,
        holder: &Holder,
        group: u64,
        max_running: u64,
        now: u64,
        lease_seconds: u64,
    ) -> Result<Seat, StoreError> {
        let group_seat = update(
            Update::builder()
                .table_name(&self.res.groups_table)
                .key("id", n(group))
                .update_expression("SET running = if_not_exists(running, :zero) + :one")
                .condition_expression(
                    "attribute_exists(id) AND (attribute_not_exists(running) OR running < max_parallel_subclouds)",
                )
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1)),
        )?;
        let global_seat = update(
            Update::builder()
                .table_name(&self.res.counters_table)
                .key("counter", s(RUNNING_COUNTER))
                .update_expression("SET #v = if_not_exists(#v, :zero) + :one")
                .condition_expression("attribute_not_exists(#v) OR #v < :cap")
                .expression_attribute_names("#v", "value")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":cap", n(max_running)),
        )?;
        let mine = update(
            Update::builder()
                .table_name(&self.res.subclouds_table)
                .key("id", n(holder.subcloud_id))
                .update_expression("SET seat = :group, lease_expires_at = :lease")
                .condition_expression(
                    "op_id = :op AND fence = :fence AND lease_expires_at > :now AND attribute_not_exists(seat)",
                )
                .expression_attribute_values(":group", n(group))
                .expression_attribute_values(":lease", n(now + lease_seconds))
                .expression_attribute_values(":op", s(holder.op_id.as_str()))
                .expression_attribute_values(":fence", n(holder.fence))
                .expression_attribute_values(":now", n(now)),
        )?;
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(mine)
            .transact_items(group_seat)
            .transact_items(global_seat)
            .send()
            .await;
        let outcome = match failed_conditions(result) {
            // Another operation took or gave back a seat at the same moment, or the store is
            // unavailable: wait a poll.
            Err(StoreError::Conflict(_) | StoreError::Unavailable(_)) => return Ok(Seat::Full),
            other => other?,
        };
        Ok(match outcome {
            None => Seat::Taken,
            Some(failed) if failed.first().copied().unwrap_or(false) => Seat::Lost,
            Some(_) => Seat::Full,
        })
    }

    /// The writes that give a seat in `group` back.
    pub(crate) fn release_seat(&self, group: u64) -> Result<Vec<TransactWriteItem>, StoreError> {
        let decrement = "SET #v = if_not_exists(#v, :one) - :one";
        Ok(vec![
            update(
                Update::builder()
                    .table_name(&self.res.groups_table)
                    .key("id", n(group))
                    .update_expression(decrement)
                    .condition_expression("attribute_exists(id)")
                    .expression_attribute_names("#v", "running")
                    .expression_attribute_values(":one", n(1)),
            )?,
            update(
                Update::builder()
                    .table_name(&self.res.counters_table)
                    .key("counter", s(RUNNING_COUNTER))
                    .update_expression(decrement)
                    .expression_attribute_names("#v", "value")
                    .expression_attribute_values(":one", n(1)),
            )?,
        ])
    }
}
