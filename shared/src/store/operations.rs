//! Operation records. A claim keeps its operation's record on the subcloud's item, in the
//! claim's one write (`slot.rs`); it is moved here, to the operations table, when a worker
//! starts the operation or when whoever ends it first does (`keep_record`), so a record is
//! always in one place or the other. Listed per subcloud through the subcloud-operations
//! index.

use super::attributes::{EXPIRES_AT, OP_ID, SUBCLOUD_ID};
use super::{from_item, n, s, to_item, Expr, StoreError};
use crate::domain::{OpId, Operation, Subcloud};
use crate::resources::SUBCLOUD_OPERATIONS_INDEX;
use aws_sdk_dynamodb::operation::put_item::PutItemError;

impl super::Store {
    /// One operation's record, read consistently: from the operations table, else from its
    /// claim on the subcloud its id names (`OpId::for_subcloud`) while no worker has started
    /// it. `None` if neither has it.
    pub async fn operation(&self, op_id: &OpId) -> Result<Option<Operation>, StoreError> {
        if let Some(op) = self.recorded_operation(op_id).await? {
            return Ok(Some(op));
        }
        let Some(subcloud_id) = op_id.subcloud_id() else {
            return Ok(None);
        };
        let sc: Option<Subcloud> = self
            .get(&self.res.subclouds_table, "subcloud", subcloud_id)
            .await?;
        let queued = sc
            .filter(|sc| sc.op_id.as_ref() == Some(op_id))
            .and_then(|sc| Operation::queued(&sc));
        match queued {
            Some(op) => Ok(Some(op)),
            // The slot may have been given back between the two reads, its record written.
            None => self.recorded_operation(op_id).await,
        }
    }

    async fn recorded_operation(&self, op_id: &OpId) -> Result<Option<Operation>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.res.operations_table)
            .key(OP_ID, s(op_id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem operations", e))?;
        out.item
            .map(|item| from_item("operation", item))
            .transpose()
    }

    /// A subcloud's operations, newest first: the one its claim still keeps (as `subcloud`
    /// was read), then the recorded ones.
    pub async fn operation_history(
        &self,
        subcloud: &Subcloud,
    ) -> Result<Vec<Operation>, StoreError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.res.operations_table)
            .index_name(SUBCLOUD_OPERATIONS_INDEX)
            .scan_index_forward(false);
        let query = Expr::new().eq(SUBCLOUD_ID, n(subcloud.id)).query(query);
        let mut recorded: Vec<Operation> = self
            .query_all("operation", "Query subcloud-operations", query)
            .await?;
        if let Some(queued) = Operation::queued(subcloud) {
            if !recorded.iter().any(|op| op.op_id == queued.op_id) {
                recorded.insert(0, queued);
            }
        }
        Ok(recorded)
    }

    /// Moves the record the claim on `sc` keeps to the operations table, unless it is there
    /// already. Called before anything else writes the record: by the worker that starts
    /// the operation, and by whatever ends one no worker may have started.
    pub async fn keep_record(&self, sc: &Subcloud) -> Result<(), StoreError> {
        match (Operation::queued(sc), &sc.op_request) {
            (Some(op), Some(request)) => self.put_record(&op, request.expires_at).await,
            _ => Ok(()),
        }
    }

    /// Writes `op` to the operations table, expiring at `expires_at` (Unix seconds, the
    /// table's TTL), unless a record of it is there already.
    pub async fn put_record(&self, op: &Operation, expires_at: u64) -> Result<(), StoreError> {
        let mut item = to_item("operation", op)?;
        item.insert(EXPIRES_AT.to_owned(), n(expires_at));
        let put = self
            .ddb
            .put_item()
            .table_name(&self.res.operations_table)
            .set_item(Some(item));
        let result = Expr::new().not_exists(OP_ID).put_item(put).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(StoreError::from_sdk("PutItem operations", e)),
            },
        }
    }
}
