//! A restore job. Nothing touches a data dir until the archive has proved itself: it extracts
//! cleanly into a staging tree in the work area (a download is extracted as it arrives, never
//! kept whole), that tree matches the manifest, and the archive's digest matches (the one
//! given, and for a local backup the one stored beside it). Only then
//! is each data dir swapped for its staged copy by two renames, and the originals are removed
//! only once every swap has succeeded; if one fails, every original is put back.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::agent::{blocking, Agent, JobError};
use crate::archive::{self, ArchiveError, Written};
use crate::config::DataDir;
use crate::digest::{self, Hashing};
use crate::jobs::Job;
use crate::progress::Metered;
use crate::store::remove_tree;
use dcbackup_protocol::{JobResult, Location, Release, RestoreRequest, Sha256};

pub(crate) async fn run(
    agent: Arc<Agent>,
    job: Arc<Job>,
    request: RestoreRequest,
) -> Result<JobResult, JobError> {
    let op_id = request.op_id;
    let staging = agent.store.scratch(op_id, "staging");
    let (written, location) = match &request.download_url {
        Some(url) => {
            let download_error = |source| JobError::Download {
                url: url.to_string(),
                source,
            };
            let download = agent
                .transfers
                .download(url)
                .await
                .map_err(download_error)?;
            let announced = download.announced;
            let (body, feeder) = download.reader();
            let (extracting, extracting_job, release, into) = (
                Arc::clone(&agent),
                Arc::clone(&job),
                request.release.clone(),
                staging.path().to_owned(),
            );
            // The archive is extracted as it arrives; its digest is known at the end, and
            // checked before any data dir is touched.
            let extracted = blocking(move || {
                let mut meter = extracting_job.progress.step(0, 90, announced);
                let mut reader = Hashing::new(Metered {
                    inner: body,
                    meter: &mut meter,
                });
                let extracted = extract(&extracting, &mut reader, &into, &release);
                // Read to the end even past a refusal, so the digest is the whole archive's.
                let drained = io::copy(&mut reader, &mut io::sink()).map_err(ArchiveError::Corrupt);
                let (_, sha256, size) = reader.finish();
                (extracted.and(drained), Written { size, sha256 })
            })
            .await?;
            // A download that broke off explains an archive cut short.
            feeder
                .await
                .map_err(|_| JobError::Stopped)?
                .map_err(download_error)?;
            let (extracted, written) = extracted;
            check_digest(request.sha256, written.sha256)?;
            extracted.map_err(JobError::Rejected)?;
            (written, Location::Central)
        }
        None => {
            let (store_agent, release) = (Arc::clone(&agent), request.release.clone());
            let backup = blocking(move || store_agent.store.newest(&release))
                .await?
                .map_err(JobError::Store)?
                .ok_or_else(|| JobError::NoLocalBackup(request.release.clone()))?;
            let path = backup.archive.clone();
            let (sha256, size) = blocking(move || digest::file(&path))
                .await?
                .map_err(JobError::Store)?;
            check_digest(Some(backup.sha256), sha256)?;
            check_digest(request.sha256, sha256)?;
            let (extracting, extracting_job, release, into) = (
                Arc::clone(&agent),
                Arc::clone(&job),
                request.release.clone(),
                staging.path().to_owned(),
            );
            blocking(move || {
                let file = File::open(&backup.archive).map_err(|source| ArchiveError::Io {
                    path: backup.archive.clone(),
                    source,
                })?;
                let mut meter = extracting_job.progress.step(0, 90, size);
                let reader = Metered {
                    inner: BufReader::new(file),
                    meter: &mut meter,
                };
                extract(&extracting, reader, &into, &release)
            })
            .await?
            .map_err(JobError::Rejected)?;
            (Written { size, sha256 }, Location::Local)
        }
    };
    tracing::info!(size = written.size, sha256 = %written.sha256, %location, "archive verified");
    blocking(move || replace(&agent.data, staging.path(), op_id)).await??;
    Ok(JobResult {
        release: request.release,
        size: written.size,
        sha256: written.sha256,
        location,
        parts: Vec::new(),
    })
}

/// Extracts into `staging` what `reader` gives and checks it against its manifest.
fn extract(
    agent: &Agent,
    reader: impl Read,
    staging: &Path,
    release: &Release,
) -> Result<(), ArchiveError> {
    let roots: Vec<&str> = agent.data.iter().map(|d| d.name.as_str()).collect();
    let manifest = archive::extract(reader, staging, &roots, release)?;
    tracing::info!(
        files = manifest.files.len(),
        backed_up_by = %manifest.subcloud,
        "archive verified against its manifest"
    );
    Ok(())
}

/// Refuses an archive whose digest is not the one expected (if one is).
fn check_digest(expected: Option<Sha256>, actual: Sha256) -> Result<(), JobError> {
    match expected {
        Some(expected) if expected != actual => Err(JobError::Digest { expected, actual }),
        _ => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplaceError {
    #[error("cannot swap in data dir {}: {cause}; every data dir was put back as it was", dir.display())]
    RolledBack { dir: PathBuf, cause: io::Error },
    #[error("cannot swap in data dir {}: {cause}; putting the originals back also failed: {failures}", dir.display())]
    Stranded {
        dir: PathBuf,
        cause: io::Error,
        failures: String,
    },
}

/// Swaps each data dir for `staging/<name>`: original aside, staged copy in. The originals
/// are removed once all are swapped; on a failure, every swapped dir is put back.
pub(crate) fn replace(data: &[DataDir], staging: &Path, op_id: Uuid) -> Result<(), ReplaceError> {
    // Each swapped dir, with where its original waits (`None`: there was none).
    let mut swapped: Vec<(&DataDir, Option<PathBuf>)> = Vec::new();
    for dir in data {
        let aside = dir.aside(op_id);
        let original = match fs::rename(&dir.path, &aside) {
            Ok(()) => Some(aside),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(cause) => return Err(roll_back(swapped, staging, &dir.path, cause)),
        };
        if let Err(cause) = fs::rename(staging.join(&dir.name), &dir.path) {
            swapped.push((dir, original));
            return Err(roll_back(swapped, staging, &dir.path, cause));
        }
        swapped.push((dir, original));
    }
    for (dir, original) in swapped {
        if let Some(original) = original {
            if let Err(error) = remove_tree(&original) {
                tracing::warn!(
                    data_dir = %dir.path.display(),
                    leftover = %original.display(),
                    %error,
                    "restored, but the replaced original could not be removed"
                );
            }
        }
    }
    Ok(())
}

/// Puts every original back, newest swap first: the restored copy goes back to staging (to be
/// removed with it), the original returns to its path.
fn roll_back(
    swapped: Vec<(&DataDir, Option<PathBuf>)>,
    staging: &Path,
    dir: &Path,
    cause: io::Error,
) -> ReplaceError {
    let mut failures = Vec::new();
    for (data_dir, original) in swapped.into_iter().rev() {
        if data_dir.path.exists() {
            let back = staging.join(format!("{}.rolled-back", data_dir.name));
            if let Err(error) = fs::rename(&data_dir.path, &back) {
                failures.push(format!("{}: {error}", data_dir.path.display()));
                continue;
            }
        }
        if let Some(original) = original {
            if let Err(error) = fs::rename(&original, &data_dir.path) {
                failures.push(format!(
                    "{} is still at {}: {error}",
                    data_dir.path.display(),
                    original.display()
                ));
            }
        }
    }
    if failures.is_empty() {
        ReplaceError::RolledBack {
            dir: dir.to_owned(),
            cause,
        }
    } else {
        tracing::error!(failures = %failures.join("; "), "data dirs could not all be put back");
        ReplaceError::Stranded {
            dir: dir.to_owned(),
            cause,
            failures: failures.join("; "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_swap_puts_every_original_back() {
        let root = std::env::temp_dir().join(format!("dcbackup-agent-swap-{}", Uuid::new_v4()));
        let staging = root.join("staging");
        let data: Vec<DataDir> = ["etc", "opt"]
            .iter()
            .map(|name| {
                let path = root.join(name);
                fs::create_dir_all(&path).expect("data dir");
                fs::write(path.join("original"), name).expect("file");
                DataDir {
                    name: (*name).to_owned(),
                    path,
                }
            })
            .collect();
        // Only `etc` is staged, so swapping in `opt` fails after `etc` was swapped.
        fs::create_dir_all(staging.join("etc")).expect("staged");
        fs::write(staging.join("etc/restored"), "new").expect("file");

        let error = replace(&data, &staging, Uuid::new_v4()).expect_err("opt is not staged");
        assert!(matches!(error, ReplaceError::RolledBack { .. }), "{error}");
        for dir in &data {
            let names: Vec<_> = fs::read_dir(&dir.path)
                .expect("dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert_eq!(names, ["original"], "{}", dir.name);
        }
        let mut left: Vec<_> = fs::read_dir(&root)
            .expect("root")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        assert_eq!(left, ["etc", "opt", "staging"], "no directory left aside");

        fs::create_dir_all(staging.join("opt")).expect("staged");
        fs::remove_dir_all(staging.join("etc.rolled-back")).expect("cleanup");
        fs::create_dir_all(staging.join("etc")).expect("staged");
        replace(&data, &staging, Uuid::new_v4()).expect("swap");
        assert_eq!(fs::read_dir(root.join("etc")).expect("dir").count(), 0);
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
