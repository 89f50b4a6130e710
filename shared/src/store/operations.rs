//! Operation records: one per claimed operation, written right after its claim, listed per
//! subcloud through the subcloud-operations index.

use super::{all_pages, from_item, n, s, to_item, StoreError};
use crate::domain::{epoch_now, OpId, OpState, Operation};
use crate::resources::{OPERATION_EXPIRES_AT, SUBCLOUD_OPERATIONS_INDEX};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

/// BatchWriteItem takes at most 25 items a call.
const BATCH_WRITE_MAX: usize = 25;
/// Unprocessed items are retried this many times, with a short growing pause.
const BATCH_RETRIES: u32 = 5;

impl super::Inventory {
    /// Writes operation records in batches; returns the ids whose record could not be written.
    /// Each expires (`expires_at`, Unix seconds, the table's TTL attribute) once the
    /// operation history period has passed.
    pub async fn put_operations(&self, ops: &[Operation]) -> Result<Vec<OpId>, StoreError> {
        let expires_at = epoch_now().saturating_add(self.operation_history.as_secs());
        let mut failed = Vec::new();
        for chunk in ops.chunks(BATCH_WRITE_MAX) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|op| {
                    let mut item = to_item("operation", op)?;
                    item.insert(OPERATION_EXPIRES_AT.to_owned(), n(expires_at));
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .map_err(|e| StoreError::Failed(e.to_string()))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<_, StoreError>>()?;
            for attempt in 0..=BATCH_RETRIES {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                }
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.res.operations_table, pending.clone())
                    .send()
                    .await;
                pending = match out {
                    Ok(out) => out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&self.res.operations_table))
                        .unwrap_or_default(),
                    Err(e) => match StoreError::from_sdk("BatchWriteItem operations", e) {
                        StoreError::Unavailable(_) => pending,
                        failed => return Err(failed),
                    },
                };
            }
            for request in pending {
                let id = request
                    .put_request
                    .and_then(|p| p.item.get("op_id").and_then(|v| v.as_s().ok()).cloned());
                if let Some(id) = id {
                    failed.push(
                        OpId::parse("op_id", &id).map_err(|e| StoreError::decode("op_id", e))?,
                    );
                }
            }
        }
        Ok(failed)
    }

    pub async fn operation(&self, op_id: &OpId) -> Result<Option<Operation>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.res.operations_table)
            .key("op_id", s(op_id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem operations", e))?;
        out.item
            .map(|item| from_item("operation", item))
            .transpose()
    }

    /// A subcloud's operations, newest first.
    pub async fn operation_history(&self, subcloud_id: u64) -> Result<Vec<Operation>, StoreError> {
        all_pages("operation", |start| async move {
            let out = self
                .ddb
                .query()
                .table_name(&self.res.operations_table)
                .index_name(SUBCLOUD_OPERATIONS_INDEX)
                .key_condition_expression("subcloud_id = :id")
                .expression_attribute_values(":id", n(subcloud_id))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("Query subcloud-operations", e))?;
            Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
        })
        .await
    }

    /// Marks an operation failed with the reason. An operation without a record (its
    /// record was never written) has nothing to mark.
    pub async fn fail_operation(&self, op_id: &OpId, error: &str) -> Result<(), StoreError> {
        self.set_operation_state(op_id, OpState::Failed, Some(error))
            .await
    }
}
