//! The sweeper, run on a schedule: recovers every slot whose lease expired (its worker died,
//! its job was lost) and judges every job that landed on the dead-letter queue — so no
//! operation is left hanging and none ends silently, and no healthy one is ended by a stray
//! copy of its job.

use crate::central::{CentralError, CentralStore};
use crate::domain::{epoch_now, timestamp_of_epoch, OpId, OpKind, Ref, Subcloud};
use crate::jobs::{JobMessage, JobQueue, QueueError};
use crate::store::{FailWhen, InventoryError, Store, StoreError};
use serde::Serialize;

/// Dead-lettered jobs handled per run at most, so one run stays short.
const DEAD_LETTERS_PER_RUN: usize = 500;

#[derive(Debug)]
pub struct Sweeper {
    pub inventory: Store,
    pub dead_letters: JobQueue,
    /// Where a recovered backup's archive is removed from.
    pub central: CentralStore,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Slots recovered from an expired lease.
    pub recovered: usize,
    /// Operations ended because their job was dead-lettered (lease expired, or never
    /// started).
    pub dead_lettered: usize,
    /// Dead-lettered jobs of operations that are still running well: left on the
    /// dead-letter queue and judged again by a later run.
    pub kept: usize,
}

/// Why a sweep stopped before its end (the next scheduled run sweeps again).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The dead-letter queue could not be read or a judged message not deleted.
    #[error(transparent)]
    DeadLetters(#[from] QueueError),
}

/// Why what a recovered create left in central storage was not discarded.
#[derive(Debug, thiserror::Error)]
enum DiscardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Central(#[from] CentralError),
}

/// What became of one dead-lettered job.
enum Judged {
    /// Its operation was ended as failed.
    Failed,
    /// Nothing to end (operation over, stale copy, unreadable): the message goes.
    Dropped,
    /// Its operation is healthy: the message stays for a later run.
    Kept,
}

impl Sweeper {
    /// One sweep at the current time.
    pub async fn sweep(&self) -> Result<SweepReport, SweepError> {
        self.sweep_at(epoch_now()).await
    }

    /// One sweep as of `now` (Unix seconds): leases that expired by then are recovered.
    pub async fn sweep_at(&self, now: u64) -> Result<SweepReport, SweepError> {
        let mut report = SweepReport::default();
        // Dead letters first: an operation whose job was dead-lettered is failed saying so.
        let mut seen = 0;
        while seen < DEAD_LETTERS_PER_RUN {
            let batch = self.dead_letters.receive().await?;
            if batch.is_empty() {
                break;
            }
            seen += batch.len();
            for (receipt, body) in batch {
                match self.dead_letter(&body, now).await {
                    Ok(Judged::Failed) => report.dead_lettered += 1,
                    Ok(Judged::Kept) => {
                        report.kept += 1;
                        continue;
                    }
                    Ok(Judged::Dropped) => {}
                    // Left on the queue for a later run; the leases are still swept.
                    Err(e) => {
                        tracing::warn!(error = %e, "dead-lettered job not judged this run");
                        continue;
                    }
                }
                self.dead_letters.delete(&receipt).await?;
            }
        }
        for sc in self.inventory.expired_leases(now).await? {
            // One subcloud that cannot be recovered now does not stop the others.
            match self.inventory.recover_expired(&sc, now).await {
                Ok(true) => {
                    report.recovered += 1;
                    self.recovered(&sc).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(subcloud = %sc.name, error = %e, "not recovered this run"),
            }
        }
        tracing::info!(
            recovered = report.recovered,
            dead_lettered = report.dead_lettered,
            kept = report.kept,
            "sweep done"
        );
        Ok(report)
    }

    /// Judges a dead-lettered job. Its operation is failed only if its lease expired (no
    /// worker carries it on) or no worker ever started it (it was throttled); a copy of the
    /// job of an operation that runs well changes nothing.
    async fn dead_letter(&self, body: &str, now: u64) -> Result<Judged, StoreError> {
        let Ok(job) = serde_json::from_str::<JobMessage>(body) else {
            tracing::error!("unreadable dead-lettered message dropped");
            return Ok(Judged::Dropped);
        };
        let sc = match self.inventory.subcloud(&Ref::Id(job.subcloud_id)).await {
            Ok(sc) => sc,
            Err(InventoryError::Store(e)) => return Err(e),
            Err(_) => return Ok(Judged::Dropped),
        };
        if sc.op_id.as_ref() != Some(&job.op_id) || sc.fence != job.fence {
            return Ok(Judged::Dropped);
        }
        if let Some(lease) = sc.lease_expires_at.filter(|lease| *lease <= now) {
            let why = format!(
                "{} operation {} failed: its job was dead-lettered and its lease expired at {}",
                job.kind,
                job.op_id,
                timestamp_of_epoch(lease)
            );
            let failed = self
                .inventory
                .fail_held(&sc, &why, FailWhen::LeaseExpiredBy(now))
                .await?;
            if failed {
                self.recovered(&sc).await;
            }
            return Ok(if failed {
                Judged::Failed
            } else {
                Judged::Dropped
            });
        }
        let why = format!(
            "{} operation {} failed: its job was dead-lettered before any worker started it",
            job.kind, job.op_id
        );
        if self
            .inventory
            .fail_held(&sc, &why, FailWhen::NeverStarted)
            .await?
        {
            return Ok(Judged::Failed);
        }
        tracing::info!(op_id = %job.op_id, subcloud = %sc.name, "dead-lettered job of a running operation kept");
        Ok(Judged::Kept)
    }

    /// What a recovered operation may have left outside the table: a create's multipart
    /// upload, which is aborted (its agent may still be sending parts), and the archive, if
    /// its worker completed the upload before it died, which is removed, since no backup
    /// record will ever point at it. (Best effort: a failure is logged, the slot is free
    /// either way, and the bucket's lifecycle rule aborts a forgotten upload after a day.)
    async fn recovered(&self, sc: &Subcloud) {
        let (Some(op_id), Some(OpKind::Create)) = (&sc.op_id, sc.op_kind) else {
            return;
        };
        discard_orphan(&self.inventory, &self.central, sc, op_id).await;
    }
}

/// Discards what the recovered create `op_id` of `sc` may have left in central storage, then
/// forgets it (`orphan_upload`); a failure is logged and it stays for the next try.
pub(crate) async fn discard_orphan(
    inventory: &Store,
    central: &CentralStore,
    sc: &Subcloud,
    op_id: &OpId,
) {
    let discarded = match discard_upload(inventory, central, sc, op_id).await {
        Ok(()) => inventory
            .clear_orphan_upload(sc.id, op_id)
            .await
            .map_err(DiscardError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = discarded {
        tracing::warn!(op_id = %op_id, subcloud = %sc.name, error = %e, "upload or archive of a recovered backup not removed");
    }
}

/// The single place where a recovered create's upload is discarded.
async fn discard_upload(
    inventory: &Store,
    central: &CentralStore,
    sc: &Subcloud,
    op_id: &OpId,
) -> Result<(), DiscardError> {
    let Some(op) = inventory.operation(op_id).await? else {
        return Ok(());
    };
    if op.options.local_only {
        return Ok(());
    }
    let key = CentralStore::key(sc.name.as_str(), &op.release, op_id);
    if let Some(upload_id) = &op.upload_id {
        if central.abort_upload(&key, upload_id).await? {
            tracing::info!(op_id = %op_id, key, "upload of a recovered backup aborted");
        }
    }
    central.delete_object(&key).await?;
    tracing::info!(op_id = %op_id, key, "archive of a recovered backup removed");
    Ok(())
}
