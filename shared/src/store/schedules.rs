//! Backup schedules in DynamoDB. Names are unique through `schedule#<name>` reservations in
//! the names table, ids come from a counter, as for groups. Due schedules are found through
//! the sparse `due-schedules` index (only an enabled schedule with a next run has `due`), so
//! the scheduler never scans. A firing is claimed by the conditional write that advances
//! `next_run` from the due time it saw: of any number of scheduler runs, one wins.

use super::attributes::{DUE, ENABLED, ID, LAST_RUN, LAST_RUN_DUE_AT, NEXT_RUN, VERSION};
use super::names::Kind;
use super::InventoryError;
use super::{failed_conditions, from_item, n, s, to_item, Expr, Item, StoreError};
use crate::domain::{LastRun, Ref, Schedule};
use crate::resources::DUE_SCHEDULES_INDEX;
use aws_sdk_dynamodb::types::AttributeValue;

/// The value of `due` on every schedule the scheduler should look at.
const IS_DUE: &str = "due";

/// How many times a write that lost a race with another writer is re-read and re-tried.
const ATTEMPTS: usize = 3;

/// A schedule as stored: its fields plus `due` (the index key) and `version` (bumped by
/// every write, so an update never overwrites a firing it did not see).
fn schedule_item(schedule: &Schedule, version: u64) -> Result<Item, StoreError> {
    let mut item = to_item("schedule", schedule)?;
    if schedule.enabled && schedule.next_run.is_some() {
        item.insert(DUE.into(), s(IS_DUE));
    }
    item.insert(VERSION.into(), n(version));
    Ok(item)
}

fn version_of(item: &Item) -> u64 {
    item.get(VERSION)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl super::Store {
    /// Stores a new schedule (its `id` is assigned here) and reserves its name.
    pub async fn create_schedule(
        &self,
        mut schedule: Schedule,
    ) -> Result<Schedule, InventoryError> {
        schedule.id = self.allocate_id("schedule").await?;
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(self.reserve_name(Kind::Schedule, &schedule.name, schedule.id)?)
            .transact_items(
                Expr::new()
                    .not_exists(ID)
                    .transact_put(&self.res.schedules_table, schedule_item(&schedule, 1)?)?,
            )
            .send()
            .await;
        match failed_conditions(result)? {
            None => Ok(schedule),
            Some(_) => Err(InventoryError::ScheduleExists(schedule.name)),
        }
    }

    async fn schedule_with_version(&self, r: &Ref) -> Result<(Schedule, u64), InventoryError> {
        let not_found = || InventoryError::ScheduleNotFound(r.clone());
        let id = self
            .resolve(Kind::Schedule, r)
            .await?
            .ok_or_else(not_found)?;
        let out = self
            .ddb
            .get_item()
            .table_name(&self.res.schedules_table)
            .key(ID, n(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem schedules", e))?;
        let item = out.item.ok_or_else(not_found)?;
        let version = version_of(&item);
        Ok((from_item("schedule", item)?, version))
    }

    /// A schedule by name or id.
    pub async fn schedule(&self, r: &Ref) -> Result<Schedule, InventoryError> {
        Ok(self.schedule_with_version(r).await?.0)
    }

    /// Every schedule, by id.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, InventoryError> {
        let mut all: Vec<Schedule> = self.scan_all(&self.res.schedules_table, "schedule").await?;
        all.sort_by_key(|s| s.id);
        Ok(all)
    }

    /// Rewrites a schedule with `change` applied to its current state; a rename moves the
    /// name reservation in the same transaction. Re-read and re-tried if a firing or
    /// another update wrote in between. An error of `change` is returned as is.
    pub async fn update_schedule<F, E>(&self, r: &Ref, change: F) -> Result<Schedule, E>
    where
        F: Fn(Schedule) -> Result<Schedule, E>,
        E: From<InventoryError>,
    {
        for _ in 0..ATTEMPTS {
            let (current, version) = self.schedule_with_version(r).await?;
            let updated = change(current.clone())?;
            if self.rewrite_schedule(&current, &updated, version).await? {
                return Ok(updated);
            }
        }
        Err(InventoryError::Contended(format!("Backup schedule {r}")).into())
    }

    /// Puts `updated` over `current` if it is still at `version`; false if it is not.
    async fn rewrite_schedule(
        &self,
        current: &Schedule,
        updated: &Schedule,
        version: u64,
    ) -> Result<bool, InventoryError> {
        let put = Expr::new().eq(VERSION, n(version)).transact_put(
            &self.res.schedules_table,
            schedule_item(updated, version + 1)?,
        )?;
        let mut tx = self.ddb.transact_write_items().transact_items(put);
        let renamed = updated.name != current.name;
        if renamed {
            tx = tx
                .transact_items(self.release_name(Kind::Schedule, &current.name, current.id)?)
                .transact_items(self.reserve_name(Kind::Schedule, &updated.name, current.id)?);
        }
        match failed_conditions(tx.send().await)? {
            None => Ok(true),
            Some(failed) if renamed && failed.get(2).copied().unwrap_or(false) => {
                Err(InventoryError::ScheduleExists(updated.name.clone()))
            }
            Some(_) => Ok(false),
        }
    }

    /// Deletes a schedule and its name reservation. Its backups stay.
    pub async fn delete_schedule(&self, r: &Ref) -> Result<Schedule, InventoryError> {
        let current = self.schedule(r).await?;
        let delete = Expr::new()
            .exists(ID)
            .transact_delete(&self.res.schedules_table, (ID, n(current.id)))?;
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(delete)
            .transact_items(self.release_name(Kind::Schedule, &current.name, current.id)?)
            .send()
            .await;
        match failed_conditions(result)? {
            None => Ok(current),
            Some(_) => Err(InventoryError::ScheduleNotFound(r.clone())),
        }
    }

    /// Enabled schedules due at `now` (next run at or before it), through the index.
    pub async fn due_schedules(&self, now: u64) -> Result<Vec<Schedule>, StoreError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.res.schedules_table)
            .index_name(DUE_SCHEDULES_INDEX);
        let query = Expr::new()
            .eq(DUE, s(IS_DUE))
            .le(NEXT_RUN, n(now))
            .query(query);
        self.query_all("schedule", "Query due-schedules", query)
            .await
    }

    /// Claims the firing of schedule `id` due at `due`: advances `next_run` to `next` (or
    /// takes the schedule off the index if it never fires again) only if it still is `due`
    /// and the schedule is enabled. True for exactly one caller per due time.
    pub async fn claim_firing(
        &self,
        id: u64,
        due: u64,
        next: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::new();
        e.eq(NEXT_RUN, n(due))
            .eq(ENABLED, AttributeValue::Bool(true))
            .increment(VERSION, 1);
        match next {
            Some(next) => e.set(NEXT_RUN, n(next)),
            None => e.remove(NEXT_RUN).remove(DUE),
        };
        let update = e.update_item(self.schedule_update(id));
        super::conditional(update.send().await, "UpdateItem claim firing")
    }

    /// Records how a firing ended, unless a later firing was recorded already.
    pub async fn record_firing(&self, id: u64, run: &LastRun) -> Result<(), StoreError> {
        let value = serde_dynamo::to_attribute_value(run)
            .map_err(|e| StoreError::Failed(format!("last run does not encode: {e}")))?;
        let result = Expr::new()
            .exists(ID)
            .absent_or(LAST_RUN, |e| {
                e.compared(LAST_RUN_DUE_AT, "<=", n(run.due_at))
            })
            .set(LAST_RUN, value)
            .increment(VERSION, 1)
            .update_item(self.schedule_update(id))
            .send()
            .await;
        super::conditional(result, "UpdateItem record firing").map(drop)
    }

    /// An update of the schedule `id`, to give an expression to.
    fn schedule_update(
        &self,
        id: u64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.ddb
            .update_item()
            .table_name(&self.res.schedules_table)
            .key(ID, n(id))
    }
}
