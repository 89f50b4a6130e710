//! The delete flow (`OpKind::Delete`, SPEC §4): the backup's release is removed from the
//! central bucket or from the subcloud's agent, and the slot left in its final state.

use super::{Retry, Step};
use crate::domain::{BackupStatus, ClaimedState, OpState, SlotState};
use crate::store::{BackupLocation, BackupSet, Outcome};

impl Step<'_> {
    pub(super) async fn delete(&self) -> Result<(), Retry> {
        let deleting = ClaimedState::Backup(BackupStatus::DeletingBackup);
        if self.sc.backup_status != Some(BackupStatus::DeletingBackup)
            || !self.advance(&deleting).await?
        {
            return Ok(());
        }
        let release = &self.job.release;
        let (location, set) = if self.job.options.local_only {
            let agent = match self.agent() {
                Ok(agent) => agent,
                Err(why) => return self.fail(deleting.failed(), why).await,
            };
            if let Err(e) = self
                .worker
                .agents
                .delete_local(&agent, self.name(), release)
                .await
            {
                return self.fail(deleting.failed(), e.to_string()).await;
            }
            (BackupLocation::Local, BackupSet::Local)
        } else {
            if let Err(e) = self
                .worker
                .central
                .delete_release(self.name(), release)
                .await
            {
                return self.fail(deleting.failed(), e.to_string()).await;
            }
            (BackupLocation::Central, BackupSet::Central)
        };
        self.worker
            .inventory
            .delete_backups(self.sc.id, release, location)
            .await?;
        // What is left decides the status: no backup at all clears it.
        let mut central = self.sc.central_backups.clone();
        let mut local = self.sc.local_backups.clone();
        match set {
            BackupSet::Central => central.remove(release.as_str()),
            BackupSet::Local => local.remove(release.as_str()),
        };
        let status = if !central.is_empty() {
            Some(BackupStatus::CompleteCentral)
        } else if !local.is_empty() {
            Some(BackupStatus::CompleteLocal)
        } else {
            None
        };
        let outcome = Outcome {
            remove_release: Some((set, release.clone())),
            ..Outcome::ending(SlotState::Backup(status))
        };
        self.finish(outcome, OpState::Succeeded).await
    }
}
