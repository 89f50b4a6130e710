//! The backups kept of each subcloud: one record per finished backup, central (an S3
//! object) or local (on the subcloud), listed per subcloud by its key.

use super::attributes::{BACKUP_ID, SUBCLOUD_ID};
use super::{n, s, to_item, Expr, StoreError};
use crate::domain::{OpId, Release};
use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupLocation {
    Central,
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub subcloud_id: u64,
    /// `<release>#<op_id>`: one record per backup operation, whatever retries write it.
    pub backup_id: String,
    pub release: Release,
    pub location: BackupLocation,
    pub size: u64,
    pub sha256: String,
    /// The S3 object of a central backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_key: Option<String>,
    pub op_id: OpId,
    pub created_at: String,
    /// The backup schedule that made it, if any: its retention decides when it goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<u64>,
}

impl BackupRecord {
    pub fn id(release: &Release, op_id: &OpId) -> String {
        format!("{}#{op_id}", release.as_str())
    }
}

impl super::Store {
    pub async fn put_backup(&self, record: &BackupRecord) -> Result<(), StoreError> {
        self.ddb
            .put_item()
            .table_name(&self.res.backups_table)
            .set_item(Some(to_item("backup", record)?))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("PutItem backups", e))?;
        Ok(())
    }

    /// A subcloud's backups, by release.
    pub async fn backups(&self, subcloud_id: u64) -> Result<Vec<BackupRecord>, StoreError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.res.backups_table)
            .consistent_read(true);
        let query = Expr::new().eq(SUBCLOUD_ID, n(subcloud_id)).query(query);
        self.query_all("backup", "Query backups", query).await
    }

    /// The newest backup of a release at a location.
    pub async fn newest_backup(
        &self,
        subcloud_id: u64,
        release: &Release,
        location: BackupLocation,
    ) -> Result<Option<BackupRecord>, StoreError> {
        Ok(self
            .backups(subcloud_id)
            .await?
            .into_iter()
            .filter(|b| &b.release == release && b.location == location)
            .max_by(|a, b| a.created_at.cmp(&b.created_at)))
    }

    /// Forgets one backup (retention); forgetting one already gone is no error.
    pub async fn delete_backup(&self, record: &BackupRecord) -> Result<(), StoreError> {
        self.ddb
            .delete_item()
            .table_name(&self.res.backups_table)
            .key(SUBCLOUD_ID, n(record.subcloud_id))
            .key(BACKUP_ID, s(&record.backup_id))
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("DeleteItem backups", e))?;
        Ok(())
    }

    /// Forgets the backups of a release at a location; returns the records removed.
    pub async fn delete_backups(
        &self,
        subcloud_id: u64,
        release: &Release,
        location: BackupLocation,
    ) -> Result<Vec<BackupRecord>, StoreError> {
        let doomed: Vec<BackupRecord> = self
            .backups(subcloud_id)
            .await?
            .into_iter()
            .filter(|b| &b.release == release && b.location == location)
            .collect();
        for chunk in doomed.chunks(25) {
            let requests = chunk
                .iter()
                .map(|b| {
                    let delete = DeleteRequest::builder()
                        .key(SUBCLOUD_ID, n(b.subcloud_id))
                        .key(BACKUP_ID, s(&b.backup_id))
                        .build()
                        .map_err(|e| StoreError::Failed(e.to_string()))?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let out = self
                .ddb
                .batch_write_item()
                .request_items(&self.res.backups_table, requests)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("BatchWriteItem backups", e))?;
            if out.unprocessed_items.is_some_and(|u| !u.is_empty()) {
                return Err(StoreError::Unavailable(
                    "backups not all deleted; retry".into(),
                ));
            }
        }
        Ok(doomed)
    }
}
