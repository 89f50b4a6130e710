//! The DynamoDB adapter: how the domain is kept in tables. Every write that depends on what
//! is stored is a conditional write or a transaction; nothing here reads and then writes
//! unguarded.

mod attributes;
mod backups;
mod expr;
mod idempotency;
mod inventory;
mod operations;
mod progress;
mod schedules;
mod seats;
mod slot;

pub use backups::{BackupLocation, BackupRecord};
pub use expr::Updates;
pub use idempotency::Begin;
pub use inventory::{Inventory, InventoryError};
pub use progress::{BackupSet, HandOff, Holder, Outcome, UploadRecord};
pub use seats::Seat;
pub use slot::{
    ClaimOutcome, ClaimRequest, FailWhen, LEASE_HELD, MAX_CLAIMS_PER_TRANSACTION, SLOT_ATTRIBUTES,
    SLOT_FREE,
};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

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
pub(crate) async fn all_pages<T, F, Fut>(what: &str, mut page: F) -> Result<Vec<T>, StoreError>
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
