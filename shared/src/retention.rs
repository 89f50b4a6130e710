//! Retention of scheduled central backups (SPEC §5): after a schedule's central backup of a
//! subcloud succeeds, that schedule's central backups of the subcloud beyond its `retain`
//! are deleted, oldest first — the S3 object, the backup record, and the release from the
//! subcloud's central set when none of it is left — and the operation records what went.
//! It runs while the new backup's operation still holds the subcloud's slot, so no restore
//! can be using any of them, and the newest (the one just made) is always kept.

use crate::domain::{Ref, Retired, Subcloud};
use crate::jobs::JobMessage;
use crate::store::{BackupLocation, BackupRecord, BackupSet, Holder, InventoryError};
use crate::worker::{Retry, Worker};
use std::collections::BTreeSet;

/// Applies the job's schedule's retention to the subcloud. Nothing happens for a job not
/// started by a schedule, a schedule deleted since, or one that keeps every backup.
pub async fn apply(
    worker: &Worker,
    holder: &Holder,
    sc: &Subcloud,
    job: &JobMessage,
) -> Result<(), Retry> {
    let Some(schedule_id) = job.schedule_id else {
        return Ok(());
    };
    let retain = match worker.inventory.schedule(&Ref::Id(schedule_id)).await {
        Ok(schedule) => schedule.retain,
        Err(InventoryError::Store(e)) => return Err(e.into()),
        // Deleted since it fired: nothing decides what to keep any more.
        Err(_) => return Ok(()),
    };
    if retain == 0 {
        return Ok(());
    }
    let all = worker.inventory.backups(sc.id).await?;
    let doomed = beyond_retain(&all, schedule_id, retain);
    if doomed.is_empty() {
        return Ok(());
    }
    let mut retired = Vec::new();
    for backup in &doomed {
        if let Some(key) = &backup.s3_key {
            if let Err(e) = worker.central.delete_object(key).await {
                // Kept for the next scheduled backup to retry; this one still succeeds.
                tracing::warn!(op_id = %job.op_id, key = %key, error = %e, "retention could not delete an object");
                continue;
            }
        }
        worker.inventory.delete_backup(backup).await?;
        retired.push(Retired {
            backup_id: backup.backup_id.clone(),
            release: backup.release.clone(),
            s3_key: backup.s3_key.clone(),
            created_at: backup.created_at.clone(),
        });
    }
    let gone: BTreeSet<&str> = retired.iter().map(|r| r.backup_id.as_str()).collect();
    let left: BTreeSet<&str> = all
        .iter()
        .filter(|b| b.location == BackupLocation::Central && !gone.contains(b.backup_id.as_str()))
        .map(|b| b.release.as_str())
        .collect();
    let emptied: Vec<_> = retired
        .iter()
        .map(|r| r.release.clone())
        .filter(|release| !left.contains(release.as_str()))
        .collect();
    if !emptied.is_empty() {
        worker
            .inventory
            .remove_releases(holder, BackupSet::Central, &emptied)
            .await?;
    }
    tracing::info!(op_id = %job.op_id, subcloud = %sc.name, removed = retired.len(), "retention applied");
    worker
        .inventory
        .record_retention(&job.op_id, &retired)
        .await?;
    Ok(())
}

/// The schedule's central backups beyond the newest `retain`, oldest first.
fn beyond_retain(all: &[BackupRecord], schedule_id: u64, retain: u64) -> Vec<BackupRecord> {
    let mut mine: Vec<&BackupRecord> = all
        .iter()
        .filter(|b| b.location == BackupLocation::Central && b.schedule_id == Some(schedule_id))
        .collect();
    // Newest first; the op id breaks ties so the order is total.
    mine.sort_by(|a, b| (&b.created_at, b.op_id.as_str()).cmp(&(&a.created_at, a.op_id.as_str())));
    let keep = usize::try_from(retain).unwrap_or(usize::MAX);
    mine.into_iter().skip(keep).rev().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OpId, Release};

    fn record(at: &str, schedule: Option<u64>, location: BackupLocation) -> BackupRecord {
        let release = Release::parse("release", "24.09").unwrap();
        let op_id = OpId::new();
        BackupRecord {
            subcloud_id: 1,
            backup_id: BackupRecord::id(&release, &op_id),
            release,
            location,
            size: 1,
            sha256: String::new(),
            s3_key: Some(format!("sc/24.09/{op_id}.tar.gz")),
            op_id,
            created_at: at.into(),
            schedule_id: schedule,
        }
    }

    #[test]
    fn only_this_schedules_central_backups_beyond_retain_go_oldest_first() {
        let all = vec![
            record("2026-01-03", Some(7), BackupLocation::Central),
            record("2026-01-01", Some(7), BackupLocation::Central),
            record("2026-01-04", Some(7), BackupLocation::Central),
            record("2026-01-02", Some(7), BackupLocation::Central),
            record("2026-01-00", None, BackupLocation::Central),
            record("2026-01-00", Some(8), BackupLocation::Central),
            record("2026-01-00", Some(7), BackupLocation::Local),
        ];
        let doomed = beyond_retain(&all, 7, 2);
        let dates: Vec<&str> = doomed.iter().map(|b| b.created_at.as_str()).collect();
        assert_eq!(dates, ["2026-01-01", "2026-01-02"]);
        assert!(beyond_retain(&all, 7, 4).is_empty());
    }
}
