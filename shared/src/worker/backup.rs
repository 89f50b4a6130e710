//! The create flow (`OpKind::Create`, SPEC §4): validating → preparing-backup (the group's
//! seat taken, the agent asked to start) → backing-up (followed by polls) → complete, with the
//! central copy's S3 multipart upload created, handed part URLs, completed or aborted here.

use super::{op_uuid, Followed, Retry, Step};
use crate::central::{CentralStore, CompleteError};
use crate::domain::{
    timestamp_now, AgentUrl, BackupStatus, ClaimedState, OpKind, OpState, SlotState,
};
use crate::store::{BackupLocation, BackupRecord, BackupSet, Outcome, UploadRecord};
use dcbackup_protocol::{
    BackupRequest, JobResult, JobView, PartUrls, UploadPlan, UploadProgress, MAX_PARTS,
};

impl Step<'_> {
    pub(super) async fn create(&self) -> Result<(), Retry> {
        let agent = match self.agent() {
            Ok(agent) => agent,
            Err(why) => return self.fail_prep(Followed::Backup, why).await,
        };
        match self.sc.backup_status {
            Some(BackupStatus::Validating) => {
                if self
                    .seated(&ClaimedState::Backup(BackupStatus::Validating))
                    .await?
                    && self.advance(&Followed::Backup.preparing()).await?
                {
                    self.start_backup(&agent).await?;
                }
                Ok(())
            }
            // A redelivery after a crash between the two steps, or a start the agent did not
            // answer: starting again is harmless, the agent answers the same op id with the
            // same job.
            Some(BackupStatus::PreBackup) => {
                // The lease is renewed (and the slot proved ours) before the agent is asked.
                if self.advance(&Followed::Backup.preparing()).await? {
                    self.start_backup(&agent).await?;
                }
                Ok(())
            }
            Some(BackupStatus::BackingUp) => self.follow(&agent, Followed::Backup).await,
            other => {
                tracing::info!(op_id = %self.job.op_id, state = ?other, "nothing to do in this state");
                Ok(())
            }
        }
    }

    async fn start_backup(&self, agent: &AgentUrl) -> Result<(), Retry> {
        let upload = if self.job.options.local_only {
            None
        } else {
            let Some(upload_id) = self.upload_id().await? else {
                let why = format!(
                    "operation {} has no record to keep its upload on",
                    self.job.op_id
                );
                return self.fail_prep(Followed::Backup, why).await;
            };
            let last = self.worker.part_urls_ahead.clamp(1, MAX_PARTS);
            let parts = self
                .worker
                .central
                .part_urls(&self.key(), &upload_id, 1..=last)
                .await?;
            Some(UploadPlan {
                part_size: self.worker.part_size,
                parts,
            })
        };
        let request = BackupRequest {
            op_id: op_uuid(self.job)?,
            release: self.job.release.clone(),
            upload,
        };
        if let Err(e) = self
            .worker
            .agents
            .start_backup(agent, self.name(), &request)
            .await
        {
            return self.start_failed(Followed::Backup, e).await;
        }
        self.started(Followed::Backup).await
    }

    pub(super) async fn backup_done(&self, view: JobView) -> Result<(), Retry> {
        // The final figures, while the record still says running.
        self.record_bytes(&view).await?;
        let Some(result) = view.result else {
            let why = "the agent reported success without a result".to_owned();
            return self.fail_followed(Followed::Backup, why).await;
        };
        if self.central_create() {
            if let Err(why) = self.complete_upload(&result).await? {
                return self.fail_followed(Followed::Backup, why).await;
            }
        }
        let now = timestamp_now();
        let (location, set, status) = if self.job.options.local_only {
            (
                BackupLocation::Local,
                BackupSet::Local,
                BackupStatus::CompleteLocal,
            )
        } else {
            (
                BackupLocation::Central,
                BackupSet::Central,
                BackupStatus::CompleteCentral,
            )
        };
        let record = BackupRecord {
            subcloud_id: self.sc.id,
            backup_id: BackupRecord::id(&self.job.release, &self.job.op_id),
            release: self.job.release.clone(),
            location,
            size: result.size,
            sha256: result.sha256.to_string(),
            s3_key: (location == BackupLocation::Central).then(|| self.key()),
            op_id: self.job.op_id.clone(),
            created_at: now.clone(),
            schedule_id: self.job.schedule_id,
        };
        // The record first: a backup the subcloud says it has must be findable.
        self.worker.inventory.put_backup(&record).await?;
        // While this operation holds the slot no restore can be using any of the subcloud's
        // backups, so its schedule's retention runs now, before the slot is freed.
        if location == BackupLocation::Central {
            crate::retention::apply(self.worker, &self.holder, self.sc, self.job).await?;
        }
        let outcome = Outcome {
            backup_datetime: Some(now),
            add_release: Some((set, self.job.release.clone())),
            ..Outcome::ending(SlotState::Backup(Some(status)))
        };
        self.finish(outcome, OpState::Succeeded).await
    }

    /// Whether this is a create whose archive goes to central storage.
    pub(super) fn central_create(&self) -> bool {
        self.job.kind == OpKind::Create && !self.job.options.local_only
    }

    /// The object key of this backup's archive.
    fn key(&self) -> String {
        CentralStore::key(self.name(), &self.job.release, &self.job.op_id)
    }

    /// The upload recorded on the operation, if any.
    async fn recorded_upload(&self) -> Result<Option<String>, Retry> {
        let op = self.worker.inventory.operation(&self.job.op_id).await?;
        Ok(op.and_then(|op| op.upload_id))
    }

    /// This backup's multipart upload: the one its operation records, else a new one, then
    /// recorded (`None`: the operation has no record to keep it on). Of two deliveries that
    /// each create one, the one recorded first is used and the other aborted.
    async fn upload_id(&self) -> Result<Option<String>, Retry> {
        if let Some(recorded) = self.recorded_upload().await? {
            return Ok(Some(recorded));
        }
        let key = self.key();
        let created = self.worker.central.create_upload(&key).await?;
        let kept = match self
            .worker
            .inventory
            .record_upload(&self.job.op_id, &created)
            .await?
        {
            UploadRecord::Recorded => return Ok(Some(created)),
            UploadRecord::Existing(recorded) => Some(recorded),
            UploadRecord::NoRecord => None,
        };
        if let Err(e) = self.worker.central.abort_upload(&key, &created).await {
            tracing::warn!(op_id = %self.job.op_id, error = %e, "a spare upload was not aborted; the bucket's lifecycle rule will");
        }
        Ok(kept)
    }

    /// Signs the URLs of the next parts of a running backup's upload and hands them to the
    /// agent. Returns whether the agent was waiting for one (so the next poll comes soon).
    /// A failure here is logged, not fatal: the next poll hands them over again.
    pub(super) async fn hand_part_urls(
        &self,
        agent: &AgentUrl,
        upload: &UploadProgress,
    ) -> Result<bool, Retry> {
        let Some(upload_id) = self.recorded_upload().await? else {
            return Ok(false);
        };
        let first = upload.parts_uploaded + 1;
        let last = upload
            .parts_uploaded
            .saturating_add(self.worker.part_urls_ahead.max(1))
            .min(MAX_PARTS);
        if first > last {
            return Ok(false);
        }
        let parts = self
            .worker
            .central
            .part_urls(&self.key(), &upload_id, first..=last)
            .await?;
        let handed = self
            .worker
            .agents
            .part_urls(
                agent,
                self.name(),
                self.job.op_id.as_str(),
                &PartUrls { parts },
            )
            .await;
        if let Err(e) = handed {
            tracing::warn!(op_id = %self.job.op_id, error = %e, "part URLs not handed over; again on the next poll");
        }
        Ok(upload.waiting_for_url)
    }

    /// Completes the upload from the parts the agent reports. `Err(why)`: the backup fails
    /// (the upload is aborted with it).
    async fn complete_upload(&self, result: &JobResult) -> Result<Result<(), String>, Retry> {
        let Some(upload_id) = self.recorded_upload().await? else {
            return Ok(Err(format!(
                "operation {} records no upload to complete",
                self.job.op_id
            )));
        };
        if result.parts.is_empty() {
            return Ok(Err("the agent reported no uploaded parts".to_owned()));
        }
        let key = self.key();
        match self
            .worker
            .central
            .complete_upload(&key, &upload_id, &result.parts)
            .await
        {
            Ok(()) => Ok(Ok(())),
            // An earlier delivery completed it, if the object is there at the archive's size.
            Err(CompleteError::NoSuchUpload) => {
                match self.worker.central.object_size(&key).await? {
                    Some(size) if size == result.size => Ok(Ok(())),
                    _ => Ok(Err(format!(
                        "the upload of {key} is gone: it was aborted before it could be completed"
                    ))),
                }
            }
            Err(CompleteError::Refused(why)) => Ok(Err(why)),
            Err(CompleteError::Unavailable(e)) => Err(e.into()),
        }
    }

    /// Aborts this backup's upload, if it has one (best effort: the bucket's lifecycle rule
    /// aborts what is left after a day).
    pub(super) async fn abort_upload(&self) {
        let aborted = match self.recorded_upload().await {
            Ok(Some(upload_id)) => self
                .worker
                .central
                .abort_upload(&self.key(), &upload_id)
                .await
                .map_err(|e| e.to_string()),
            Ok(None) => Ok(false),
            Err(e) => Err(e.to_string()),
        };
        match aborted {
            Ok(true) => tracing::info!(op_id = %self.job.op_id, "upload aborted"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(op_id = %self.job.op_id, error = %e, "upload not aborted; the bucket's lifecycle rule will")
            }
        }
    }
}
