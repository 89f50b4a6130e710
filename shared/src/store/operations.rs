//! Operation records: one per claimed operation, written in the claim's own transaction
//! (`slot.rs`), listed per subcloud through the subcloud-operations index.

use super::attributes::{OP_ID, SUBCLOUD_ID};
use super::{from_item, n, s, Expr, StoreError};
use crate::domain::{OpId, OpState, Operation};
use crate::resources::SUBCLOUD_OPERATIONS_INDEX;

impl super::Store {
    /// One operation's record, read consistently.
    pub async fn operation(&self, op_id: &OpId) -> Result<Option<Operation>, StoreError> {
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

    /// A subcloud's operations, newest first.
    pub async fn operation_history(&self, subcloud_id: u64) -> Result<Vec<Operation>, StoreError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.res.operations_table)
            .index_name(SUBCLOUD_OPERATIONS_INDEX)
            .scan_index_forward(false);
        let query = Expr::new().eq(SUBCLOUD_ID, n(subcloud_id)).query(query);
        self.query_all("operation", "Query subcloud-operations", query)
            .await
    }

    /// Marks an operation failed with the reason. An operation without a record (its
    /// record was never written) has nothing to mark.
    pub async fn fail_operation(&self, op_id: &OpId, error: &str) -> Result<(), StoreError> {
        self.set_operation_state(op_id, OpState::Failed, Some(error))
            .await
    }
}
