//! A backup job: archive the data dirs into the work area, then either upload the archive to
//! its pre-signed URL and keep no copy (central) or move it into the local store (local).

use std::sync::Arc;

use crate::agent::{blocking, Agent, JobError};
use crate::archive::{self, Origin};
use crate::jobs::Job;
use crate::protocol::{BackupRequest, JobResult, Location};

pub(crate) async fn run(
    agent: Arc<Agent>,
    job: Arc<Job>,
    request: BackupRequest,
) -> Result<JobResult, JobError> {
    let scratch = agent.store.scratch(request.op_id, "tar.gz");
    // Archiving is most of a local backup; a central one also has the upload to do.
    let archived_at = if request.upload_url.is_some() { 50 } else { 95 };
    let written = {
        let (agent, job, release) = (
            Arc::clone(&agent),
            Arc::clone(&job),
            request.release.clone(),
        );
        let out = scratch.path().to_owned();
        blocking(move || {
            let origin = Origin {
                subcloud: &agent.name,
                release: &release,
            };
            archive::create(&agent.data, origin, &out, |total| {
                job.progress.archiving(0, archived_at, total)
            })
        })
        .await?
        .map_err(JobError::Archive)?
    };
    tracing::info!(size = written.size, sha256 = %written.sha256, "archive written");
    job.progress.archive_written(written.size);

    let location = match &request.upload_url {
        Some(url) => {
            let meter = job.progress.uploading(archived_at, 99, written.size);
            agent
                .transfers
                .upload(url, scratch.path(), written.size, meter)
                .await
                .map_err(|source| JobError::Upload {
                    url: url.to_string(),
                    source,
                })?;
            Location::Central
        }
        None => {
            let (agent, release, op_id) =
                (Arc::clone(&agent), request.release.clone(), request.op_id);
            let archive = scratch.path().to_owned();
            let kept = blocking(move || agent.store.keep(&release, op_id, &archive, &written))
                .await?
                .map_err(JobError::Store)?;
            tracing::info!(path = %kept.display(), "local backup kept");
            Location::Local
        }
    };
    Ok(JobResult {
        release: request.release,
        size: written.size,
        sha256: written.sha256,
        location,
    })
}
