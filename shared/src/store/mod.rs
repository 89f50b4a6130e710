//! The DynamoDB adapter: how the domain is kept in tables, behind one facade, [`Store`]. Every
//! write that depends on what is stored is a conditional write or a transaction; nothing here
//! reads and then writes unguarded. Its dialect: attribute names from `attributes.rs`, every
//! expression built by [`Expr`].
//!
//! One file per aggregate: `subclouds.rs`, `groups.rs`, `names.rs` (name reservations and the
//! name cache), `schedules.rs`, `backups.rs`, `operations.rs` (records), `idempotency.rs`
//! (kept answers); the operation's own writes: `slot.rs` (claim, release, recovery, SPEC §3),
//! `progress.rs` (a worker's steps and the finish) and `seats.rs` (the caps).

pub(crate) mod attributes;
mod backups;
mod expr;
mod groups;
mod idempotency;
mod names;
mod operations;
mod progress;
mod schedules;
mod seats;
mod slot;
mod subclouds;

pub use backups::{BackupLocation, BackupRecord};
pub use expr::Expr;
pub use idempotency::Begin;
pub use progress::{BackupSet, HandOff, Holder, Outcome, UploadRecord};
pub use seats::Seat;
pub use slot::{ClaimOutcome, ClaimRequest, FailWhen, HELD, SLOT_ATTRIBUTES};

use crate::domain::{DeployStatus, Name, Ref, SlotHolder, DEFAULT_GROUP_ID};
use crate::resources::Resources;
use attributes::{COUNTER, ID, VALUE};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::collections::HashMap;
use std::sync::Arc;

pub type Item = HashMap<String, AttributeValue>;

const SECONDS_PER_DAY: u64 = 24 * 3600;

/// The store: every table of the deployment (subclouds, groups, names, counters, operations,
/// backups, schedules, idempotency keys) behind one client. Cheap to clone; clones share the
/// name cache.
#[derive(Debug, Clone)]
pub struct Store {
    ddb: aws_sdk_dynamodb::Client,
    res: Resources,
    /// Shared by the clones of this instance's store.
    names: Arc<names::NameCache>,
    /// How long an operation record is kept after it is written: its `expires_at`, which
    /// the operations table's TTL acts on.
    operation_history: std::time::Duration,
}

impl Store {
    /// Keeps operation records for `Config::DEFAULT_OPERATION_HISTORY_DAYS`.
    pub fn new(ddb: aws_sdk_dynamodb::Client, res: Resources) -> Self {
        Store {
            ddb,
            res,
            names: Arc::default(),
            operation_history: std::time::Duration::from_secs(
                crate::config::Config::DEFAULT_OPERATION_HISTORY_DAYS * SECONDS_PER_DAY,
            ),
        }
    }

    /// Keeps operation records for `days` days after they are written (`Config::from_env`'s
    /// `DCBACKUP_OPERATION_HISTORY_DAYS`).
    pub fn with_operation_history_days(mut self, days: u64) -> Self {
        self.operation_history =
            std::time::Duration::from_secs(days.saturating_mul(SECONDS_PER_DAY));
        self
    }

    /// The item `id` of `table` (keyed by `id`), read consistently.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        what: &str,
        id: u64,
    ) -> Result<Option<T>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(table)
            .key(ID, n(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem", e))?;
        out.item.map(|item| from_item(what, item)).transpose()
    }

    /// Every item of `table`, read consistently.
    async fn scan_all<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        all_pages(what, |start| async move {
            let out = self
                .ddb
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("Scan", e))?;
            Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
        })
        .await
    }

    /// Every item `query` (its key condition given, no start key) answers, decoded, page by
    /// page; `operation` names it in errors.
    async fn query_all<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        operation: &str,
        query: QueryFluentBuilder,
    ) -> Result<Vec<T>, StoreError> {
        all_pages(what, |start| {
            let page = query.clone().set_exclusive_start_key(start);
            async move {
                let out = page
                    .send()
                    .await
                    .map_err(|e| StoreError::from_sdk(operation, e))?;
                Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
            }
        })
        .await
    }

    /// The next id of `counter`, from an atomic counter (ids are never reused): subclouds
    /// from 1, groups from 2 (1 is always `Default`'s, whether or not it was created yet).
    async fn allocate_id(&self, counter: &str) -> Result<u64, StoreError> {
        let base = if counter == "group" {
            DEFAULT_GROUP_ID
        } else {
            0
        };
        let update = self
            .ddb
            .update_item()
            .table_name(&self.res.counters_table)
            .key(COUNTER, s(counter))
            .return_values(ReturnValue::UpdatedNew);
        let out = Expr::new()
            .count(VALUE, base, 1)
            .update_item(update)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UpdateItem counters", e))?;
        out.attributes
            .and_then(|a| a.get(VALUE).and_then(|v| v.as_n().ok()?.parse().ok()))
            .ok_or_else(|| StoreError::decode("counter", "value is not a number"))
    }
}

/// What can go wrong with an inventory request, each variant something the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// dcmanager's words, verbatim (SPEC §2).
    #[error("Subcloud not found")]
    SubcloudNotFound(Ref),
    #[error("Subcloud group not found: {0}")]
    GroupNotFound(Ref),
    #[error("Backup schedule not found: {0}")]
    ScheduleNotFound(Ref),
    #[error("A backup schedule named {0} already exists")]
    ScheduleExists(Name),
    #[error("Invalid group_id: there is no subcloud group {0}")]
    UnknownGroup(Ref),
    #[error("A subcloud named {0} already exists")]
    SubcloudExists(Name),
    #[error("A subcloud group named {0} already exists")]
    GroupExists(Name),
    #[error("Subcloud group {name} still has {members} subcloud(s); move or delete them first")]
    GroupNotEmpty { name: Name, members: u64 },
    #[error("The Default subcloud group cannot be {0}")]
    DefaultGroupProtected(&'static str),
    #[error("Cannot delete subcloud {0} while it is managed; unmanage it first")]
    SubcloudManaged(Name),
    /// dcmanager refuses to delete a subcloud in a deploy state of an active deployment.
    #[error(
        "Cannot delete subcloud {name} during an active operation: its deploy-status is '{state}'"
    )]
    SubcloudDeploying { name: Name, state: DeployStatus },
    #[error("bootstrap-address needs the subcloud's agent-url (for its scheme and port); set agent-url instead")]
    NoAgentUrl,
    #[error("Subcloud {name} is busy: {} operation {} in progress since {}", holder.kind, holder.op_id, holder.since)]
    Busy {
        id: u64,
        name: Name,
        holder: SlotHolder,
    },
    #[error("{0} changed while it was being updated; try again")]
    Contended(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failure of the storage service itself, never of what a caller sent.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled, unreachable or timed out: worth retrying later (503).
    #[error("the database is unavailable ({0})")]
    Unavailable(String),
    /// A concurrent transaction on the same item cancelled this one (TransactionConflict):
    /// nothing was written; trying again meets the other writer's result. Callers with a
    /// retry loop retry; left over, it is the caller's race with another request (409).
    #[error("the item changed concurrently ({0})")]
    Conflict(String),
    /// Anything else: a defect or a misconfiguration (500, details logged only).
    #[error("database request failed ({0})")]
    Failed(String),
}

impl StoreError {
    pub fn from_sdk<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        const TRANSIENT: [&str; 6] = [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
            "InternalServerError",
            "ServiceUnavailable",
            "TransactionInProgressException",
        ];
        let detail = format!(
            "{operation}: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(&err)
        );
        match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                StoreError::Unavailable(detail)
            }
            SdkError::ServiceError(e) if TRANSIENT.contains(&e.err().code().unwrap_or("")) => {
                StoreError::Unavailable(detail)
            }
            _ => StoreError::Failed(detail),
        }
    }

    pub(crate) fn decode(what: &str, err: impl std::fmt::Display) -> StoreError {
        StoreError::Failed(format!("stored {what} does not decode: {err}"))
    }
}

/// Every item of a paginated Scan or Query, decoded: `page` sends one request from the
/// given start key and returns its items and where the next page starts.
async fn all_pages<T, F, Fut>(what: &str, mut page: F) -> Result<Vec<T>, StoreError>
where
    T: serde::de::DeserializeOwned,
    F: FnMut(Option<Item>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<Item>, Option<Item>), StoreError>>,
{
    let mut all = Vec::new();
    let mut start = None;
    loop {
        let (items, next) = page(start.take()).await?;
        for item in items {
            all.push(from_item(what, item)?);
        }
        match next {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(all),
        }
    }
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn to_item<T: serde::Serialize>(what: &str, value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value)
        .map_err(|e| StoreError::Failed(format!("{what} does not encode: {e}")))
}

/// `value` as one attribute (a map, a list, …).
pub(crate) fn to_value<T: serde::Serialize + ?Sized>(
    what: &str,
    value: &T,
) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|e| StoreError::Failed(format!("{what} does not encode: {e}")))
}

pub(crate) fn from_item<T: serde::de::DeserializeOwned>(
    what: &str,
    item: Item,
) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::decode(what, e))
}

/// `None` when the transaction committed; otherwise which of its items failed their
/// condition, in order. Any other failure is a store error.
pub(crate) fn failed_conditions<R: std::fmt::Debug>(
    result: Result<
        R,
        SdkError<
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >,
    >,
) -> Result<Option<Vec<bool>>, StoreError> {
    match result {
        Ok(_) => Ok(None),
        Err(SdkError::ServiceError(e)) => match e.err() {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled)
                if cancelled
                    .cancellation_reasons()
                    .iter()
                    .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
            {
                Ok(Some(
                    cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code() == Some("ConditionalCheckFailed"))
                        .collect(),
                ))
            }
            // Cancelled by a concurrent transaction on the same item: worth retrying.
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled)
                if cancelled
                    .cancellation_reasons()
                    .iter()
                    .any(|r| r.code() == Some("TransactionConflict")) =>
            {
                Err(StoreError::Conflict("TransactWriteItems: transaction conflict".into()))
            }
            _ => Err(StoreError::from_sdk(
                "TransactWriteItems",
                SdkError::ServiceError(e),
            )),
        },
        Err(e) => Err(StoreError::from_sdk("TransactWriteItems", e)),
    }
}

/// Waits before retrying a write that a concurrent transaction cancelled: a random time up
/// to 5 ms doubled per attempt, at most 200 ms ("full jitter"), so writers that collided
/// once do not collide again in step.
pub(crate) async fn conflict_backoff(attempt: usize) {
    let ceiling = (5u64 << attempt.min(6)).min(200);
    tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..=ceiling))).await;
}

/// `Ok(true)` if the conditional write applied, `Ok(false)` if its condition failed.
pub(crate) fn conditional<T>(
    result: Result<
        T,
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::update_item::UpdateItemError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >,
    >,
    what: &str,
) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(StoreError::from_sdk(what, e)),
    }
}
