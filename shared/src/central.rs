//! Central backups in S3: objects under `<subcloud>/<release>/<op id>.tar.gz`, reached by the
//! agents through pre-signed URLs so they never hold AWS credentials.

use crate::domain::{OpId, Release};
use aws_sdk_s3::presigning::PresigningConfig;
use std::time::Duration;

/// How long a pre-signed URL lasts: long enough for a large upload to start.
const URL_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
#[error("central storage: {0}")]
pub struct CentralError(String);

#[derive(Debug, Clone)]
pub struct CentralStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl CentralStore {
    pub fn new(s3: aws_sdk_s3::Client, bucket: String) -> CentralStore {
        CentralStore { s3, bucket }
    }

    pub fn key(subcloud: &str, release: &Release, op_id: &OpId) -> String {
        format!("{subcloud}/{}/{op_id}.tar.gz", release.as_str())
    }

    fn presigning() -> Result<PresigningConfig, CentralError> {
        PresigningConfig::expires_in(URL_TTL).map_err(|e| CentralError(e.to_string()))
    }

    /// A URL the agent PUTs the archive to (signed for its octet-stream content type).
    pub async fn upload_url(&self, key: &str) -> Result<String, CentralError> {
        let request = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .presigned(Self::presigning()?)
            .await
            .map_err(|e| CentralError(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(request.uri().to_owned())
    }

    pub async fn download_url(&self, key: &str) -> Result<String, CentralError> {
        let request = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(Self::presigning()?)
            .await
            .map_err(|e| CentralError(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(request.uri().to_owned())
    }

    /// Deletes one object (deleting one already gone is no error in S3).
    pub async fn delete_object(&self, key: &str) -> Result<(), CentralError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| CentralError(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    /// Deletes every object of a subcloud's release; returns how many went.
    pub async fn delete_release(
        &self,
        subcloud: &str,
        release: &Release,
    ) -> Result<usize, CentralError> {
        let prefix = format!("{subcloud}/{}/", release.as_str());
        let mut deleted = 0;
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| CentralError(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    self.delete_object(key).await?;
                    deleted += 1;
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(deleted),
            }
        }
    }
}
