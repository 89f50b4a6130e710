//! The restore flow (`OpKind::Restore`, SPEC §4): the agent at the bootstrap address (or the
//! registered one) is asked to restore the named backup, then followed by polls to
//! restore-complete or restore-failed.

use super::{op_uuid, Followed, Retry, Step};
use crate::domain::{AgentUrl, DeployStatus};
use crate::store::BackupLocation;
use dcbackup_protocol::RestoreRequest;

impl Step<'_> {
    pub(super) async fn restore(&self) -> Result<(), Retry> {
        let agent = match self.agent() {
            Ok(agent) => agent,
            Err(why) => return self.fail_prep(Followed::Restore, why).await,
        };
        match self.sc.deploy_status.as_str() {
            DeployStatus::PRE_RESTORE => {
                let waiting = Followed::Restore.preparing();
                if self.seated(&waiting).await? && self.advance(&waiting).await? {
                    self.start_restore(&agent).await?;
                }
                Ok(())
            }
            DeployStatus::RESTORING => self.follow(&agent, Followed::Restore).await,
            other => {
                tracing::info!(op_id = %self.job.op_id, state = other, "nothing to do in this state");
                Ok(())
            }
        }
    }

    async fn start_restore(&self, agent: &AgentUrl) -> Result<(), Retry> {
        let (download_url, sha256) = if self.job.options.local_only {
            (None, None)
        } else {
            let newest = self
                .worker
                .inventory
                .newest_backup(self.sc.id, &self.job.release, BackupLocation::Central)
                .await?;
            let Some(backup) = newest else {
                let why = format!(
                    "no central backup found for release {}",
                    self.job.release.as_str()
                );
                return self.fail_prep(Followed::Restore, why).await;
            };
            let Some(key) = backup.s3_key.clone() else {
                let why = format!("central backup {} has no object key", backup.backup_id);
                return self.fail_prep(Followed::Restore, why).await;
            };
            let url = self.worker.central.download_url(&key).await?;
            let url = url
                .parse()
                .map_err(|reason| Retry::DownloadUrl { key, reason })?;
            (Some(url), backup.sha256.parse().ok())
        };
        let request = RestoreRequest {
            op_id: op_uuid(self.job)?,
            release: self.job.release.clone(),
            download_url,
            sha256,
        };
        if let Err(e) = self
            .worker
            .agents
            .start_restore(agent, self.name(), &request)
            .await
        {
            return self.start_failed(Followed::Restore, e).await;
        }
        self.started(Followed::Restore).await
    }
}
