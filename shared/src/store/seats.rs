//! Seats: how many operations of a group (its `max_parallel_subclouds`) and of the whole
//! system (a configured cap) run at once. A worker takes a seat before it starts an agent
//! job and the operation gives it back in the same transaction that ends it, so the counts
//! cannot drift from what runs. A job that finds no seat waits (is delayed) and keeps its
//! slot.

use super::attributes::{
    COUNTER, FENCE, ID, LEASE_EXPIRES_AT, MAX_PARALLEL_SUBCLOUDS, OP_ID, RUNNING, SEAT, VALUE,
};
use super::{failed_conditions, n, s, Expr, Holder, StoreError};
use aws_sdk_dynamodb::types::TransactWriteItem;

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

/// Adds to `e` taking one seat of a count (`attr`) capped by `cap`, a missing count being 0.
fn take_one<'e>(
    e: &'e mut Expr,
    attr: &str,
    cap: impl FnOnce(&mut Expr) -> String,
) -> &'e mut Expr {
    e.absent_or(attr, |e| format!("{} < {}", e.name(attr), cap(e)))
        .count(attr, 0, 1)
}

impl super::Store {
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
        let mut group_seat = Expr::new();
        group_seat.exists(ID);
        take_one(&mut group_seat, RUNNING, |e| e.name(MAX_PARALLEL_SUBCLOUDS));
        let group_seat = group_seat.transact_update(&self.res.groups_table, (ID, n(group)))?;
        let mut global_seat = Expr::new();
        take_one(&mut global_seat, VALUE, |e| e.value(n(max_running)));
        let global_seat =
            global_seat.transact_update(&self.res.counters_table, (COUNTER, s(RUNNING_COUNTER)))?;
        let mine = Expr::new()
            .eq(OP_ID, s(holder.op_id.as_str()))
            .eq(FENCE, n(holder.fence))
            .gt(LEASE_EXPIRES_AT, n(now))
            .not_exists(SEAT)
            .set(SEAT, n(group))
            .set(LEASE_EXPIRES_AT, n(now + lease_seconds))
            .transact_update(&self.res.subclouds_table, (ID, n(holder.subcloud_id)))?;
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
        Ok(vec![
            Expr::new()
                .exists(ID)
                .count(RUNNING, 1, -1)
                .transact_update(&self.res.groups_table, (ID, n(group)))?,
            Expr::new()
                .count(VALUE, 1, -1)
                .transact_update(&self.res.counters_table, (COUNTER, s(RUNNING_COUNTER)))?,
        ])
    }
}
