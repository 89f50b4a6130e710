//! A restore job. Nothing touches a data dir until the archive has proved itself: its digest
//! matches (the one given, and for a local backup the one stored beside it), it extracts
//! cleanly into a staging tree in the work area, and that tree matches the manifest. Only then
//! is each data dir swapped for its staged copy by two renames, and the originals are removed
//! only once every swap has succeeded; if one fails, every original is put back.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::agent::{blocking, Agent, JobError};
use crate::archive::{self, Written};
use crate::config::DataDir;
use crate::digest;
use crate::jobs::Job;
use crate::protocol::{JobResult, Location, RestoreRequest};
use crate::store::remove_tree;

pub(crate) async fn run(
    agent: Arc<Agent>,
    job: Arc<Job>,
    request: RestoreRequest,
) -> Result<JobResult, JobError> {
    let op_id = request.op_id;
    let download = agent.store.scratch(op_id, "download.tar.gz");
    let (archive, written, location) = match &request.download_url {
        Some(url) => {
            let written = agent
                .transfers
                .download(url, download.path(), |total| {
                    job.progress.step(0, 40, total)
                })
                .await
                .map_err(|source| JobError::Download {
                    url: url.to_string(),
                    source,
                })?;
            (download.path().to_owned(), written, Location::Central)
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
            if sha256 != backup.sha256 {
                return Err(JobError::Digest {
                    expected: backup.sha256,
                    actual: sha256,
                });
            }
            (backup.archive, Written { size, sha256 }, Location::Local)
        }
    };
    if let Some(expected) = request.sha256 {
        if expected != written.sha256 {
            return Err(JobError::Digest {
                expected,
                actual: written.sha256,
            });
        }
    }
    tracing::info!(size = written.size, sha256 = %written.sha256, %location, "archive obtained");

    let staging = agent.store.scratch(op_id, "staging");
    let release = request.release.clone();
    blocking(move || {
        let roots: Vec<&str> = agent.data.iter().map(|d| d.name.as_str()).collect();
        let manifest = archive::extract(&archive, staging.path(), &roots, &release, |total| {
            job.progress.step(40, 90, total)
        })
        .map_err(JobError::Rejected)?;
        tracing::info!(
            files = manifest.files.len(),
            backed_up_by = %manifest.subcloud,
            "archive verified against its manifest"
        );
        replace(&agent.data, staging.path(), op_id)?;
        Ok::<_, JobError>(())
    })
    .await??;
    Ok(JobResult {
        release: request.release,
        size: written.size,
        sha256: written.sha256,
        location,
    })
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
