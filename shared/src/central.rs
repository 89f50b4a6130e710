//! Central backups in S3: objects under `<subcloud>/<release>/<op id>.tar.gz`, reached by the
//! agents through pre-signed URLs so they never hold AWS credentials. A backup goes up as a
//! multipart upload (one PutObject stops at 5 GB): the worker creates it, signs UploadPart
//! URLs a few parts ahead of the agent as it advances, and completes or aborts it.

use crate::domain::{OpId, Release};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use dcbackup_protocol::{PartUrl, UploadedPart};
use std::ops::RangeInclusive;
use std::time::Duration;

/// How long a pre-signed URL lasts: a download starts at once; part URLs are signed again at
/// every poll, long before this runs out.
const URL_TTL: Duration = Duration::from_secs(3600);
/// S3's error code for an upload id that no longer names an upload (completed or aborted).
const NO_SUCH_UPLOAD: &str = "NoSuchUpload";

#[derive(Debug, thiserror::Error)]
#[error("central storage: {0}")]
pub struct CentralError(String);

fn sdk_error<E, R>(e: SdkError<E, R>) -> CentralError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    CentralError(DisplayErrorContext(e).to_string())
}

/// Why an upload could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// The upload no longer exists: completed already (by an earlier delivery) or aborted.
    #[error("the upload no longer exists (completed or aborted)")]
    NoSuchUpload,
    /// S3 refused the parts (a missing part, a wrong ETag, a part too small).
    #[error("S3 refused to complete the upload: {0}")]
    Refused(String),
    /// S3 could not be reached or failed: worth asking again.
    #[error(transparent)]
    Unavailable(CentralError),
}

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

    /// Starts the multipart upload of `key`; its upload id.
    pub async fn create_upload(&self, key: &str) -> Result<String, CentralError> {
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/gzip")
            .send()
            .await
            .map_err(sdk_error)?;
        created
            .upload_id()
            .map(str::to_owned)
            .ok_or_else(|| CentralError(format!("CreateMultipartUpload {key}: no upload id")))
    }

    /// Pre-signed UploadPart URLs of `parts` of the upload; the agent sends each part's
    /// `Content-MD5`, which S3 checks (the header needs no signature).
    pub async fn part_urls(
        &self,
        key: &str,
        upload_id: &str,
        parts: RangeInclusive<u32>,
    ) -> Result<Vec<PartUrl>, CentralError> {
        let mut urls = Vec::new();
        for part_number in parts {
            let number = i32::try_from(part_number)
                .map_err(|_| CentralError(format!("part number {part_number} is too large")))?;
            let request = self
                .s3
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .presigned(Self::presigning()?)
                .await
                .map_err(sdk_error)?;
            let url = request.uri().parse().map_err(|e: String| {
                CentralError(format!("a pre-signed UploadPart URL is unusable: {e}"))
            })?;
            urls.push(PartUrl { part_number, url });
        }
        Ok(urls)
    }

    /// Completes the upload from the parts the agent reports; S3 checks each part's ETag.
    pub async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), CompleteError> {
        let mut completed = Vec::new();
        for part in parts {
            let number = i32::try_from(part.part_number).map_err(|_| {
                CompleteError::Refused(format!("part number {} is too large", part.part_number))
            })?;
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(&part.etag)
                    .build(),
            );
        }
        let result = self
            .s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(NO_SUCH_UPLOAD) => Err(CompleteError::NoSuchUpload),
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| r.status().is_client_error()) =>
            {
                Err(CompleteError::Refused(DisplayErrorContext(e).to_string()))
            }
            Err(e) => Err(CompleteError::Unavailable(sdk_error(e))),
        }
    }

    /// Aborts the upload, freeing its parts; one already gone (aborted, completed) is no
    /// error. Returns whether this call aborted it.
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<bool, CentralError> {
        let result = self
            .s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(NO_SUCH_UPLOAD) => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// The size of the object at `key`, if there is one.
    pub async fn object_size(&self, key: &str) -> Result<Option<u64>, CentralError> {
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub async fn download_url(&self, key: &str) -> Result<String, CentralError> {
        let request = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(Self::presigning()?)
            .await
            .map_err(sdk_error)?;
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
            .map_err(sdk_error)?;
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
                .map_err(sdk_error)?;
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
