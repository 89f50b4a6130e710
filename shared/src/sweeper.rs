//! The sweeper, run on a schedule: recovers every slot whose lease expired (its worker died,
//! its job was lost) and ends, as failed, every operation whose job landed on the
//! dead-letter queue — so no operation is left hanging and none ends silently.

use crate::domain::{epoch_now, Ref};
use crate::jobs::{JobMessage, JobQueue};
use crate::store::{Inventory, InventoryError, StoreError};
use serde::Serialize;

/// Dead-lettered jobs handled per run at most, so one run stays short.
const DEAD_LETTERS_PER_RUN: usize = 500;

#[derive(Debug)]
pub struct Sweeper {
    pub inventory: Inventory,
    pub dead_letters: JobQueue,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Slots recovered from an expired lease.
    pub recovered: usize,
    /// Operations ended because their job was dead-lettered.
    pub dead_lettered: usize,
}

impl Sweeper {
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let now = epoch_now();
        for sc in self.inventory.expired_leases(now).await? {
            // One subcloud that cannot be recovered now does not stop the others.
            match self.inventory.recover_expired(&sc, now).await {
                Ok(true) => report.recovered += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(subcloud = %sc.name, error = %e, "not recovered this run"),
            }
        }
        let mut seen = 0;
        while seen < DEAD_LETTERS_PER_RUN {
            let batch = self
                .dead_letters
                .receive()
                .await
                .map_err(StoreError::Unavailable)?;
            if batch.is_empty() {
                break;
            }
            seen += batch.len();
            for (receipt, body) in batch {
                if self.dead_letter(&body).await? {
                    report.dead_lettered += 1;
                }
                self.dead_letters
                    .delete(&receipt)
                    .await
                    .map_err(StoreError::Unavailable)?;
            }
        }
        tracing::info!(
            recovered = report.recovered,
            dead_lettered = report.dead_lettered,
            "sweep done"
        );
        Ok(report)
    }

    /// Ends the operation of a dead-lettered job if it still holds its slot.
    async fn dead_letter(&self, body: &str) -> Result<bool, StoreError> {
        let Ok(job) = serde_json::from_str::<JobMessage>(body) else {
            tracing::error!("unreadable dead-lettered message dropped");
            return Ok(false);
        };
        let sc = match self.inventory.subcloud(&Ref::Id(job.subcloud_id)).await {
            Ok(sc) => sc,
            Err(InventoryError::Store(e)) => return Err(e),
            Err(_) => return Ok(false),
        };
        if sc.op_id.as_ref() != Some(&job.op_id) || sc.fence != job.fence {
            return Ok(false);
        }
        let why = format!(
            "{} operation {} failed: no worker could carry out its job",
            job.kind, job.op_id
        );
        self.inventory.fail_held(&sc, &why, None).await
    }
}
