//! A backup job: archive the data dirs, streaming the archive either into the local store
//! (local) or, part by part, into the central store's multipart upload, keeping no copy
//! (central).

use std::fs::File;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::agent::{blocking, Agent, JobError};
use crate::archive::{self, ArchiveError, Origin, Written};
use crate::jobs::Job;
use crate::upload::{self, PartWriter, UploadState};
use dcbackup_protocol::{BackupRequest, JobResult, Location, UploadedPart};

/// How long a failed archive waits for the uploader to say whether it stopped first.
const UPLOADER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) async fn run(
    agent: Arc<Agent>,
    job: Arc<Job>,
    request: BackupRequest,
) -> Result<JobResult, JobError> {
    let (written, location, parts) = match job.upload.clone() {
        Some(state) => {
            let (written, parts) = central(&agent, &job, &request, state).await?;
            (written, Location::Central, parts)
        }
        None => (
            local(&agent, &job, &request).await?,
            Location::Local,
            Vec::new(),
        ),
    };
    Ok(JobResult {
        release: request.release,
        size: written.size,
        sha256: written.sha256,
        location,
        parts,
    })
}

/// Writes the archive in the work area, then moves it into the store.
async fn local(
    agent: &Arc<Agent>,
    job: &Arc<Job>,
    request: &BackupRequest,
) -> Result<Written, JobError> {
    let scratch = agent.store.scratch(request.op_id, "tar.gz");
    let out = scratch.path().to_owned();
    let (archiving, archiving_job, release) =
        (Arc::clone(agent), Arc::clone(job), request.release.clone());
    let written = blocking(move || {
        let at_out = |source| ArchiveError::Io {
            path: out.clone(),
            source,
        };
        let file = File::create(&out).map_err(at_out)?;
        let origin = Origin {
            subcloud: &archiving.name,
            release: &release,
        };
        let (file, written) = archive::create(&archiving.data, origin, file, |total| {
            archiving_job.progress.archiving(0, 95, total)
        })?;
        file.sync_all().map_err(at_out)?;
        Ok(written)
    })
    .await?
    .map_err(JobError::Archive)?;
    tracing::info!(size = written.size, sha256 = %written.sha256, "archive written");
    job.progress.archive_written(written.size);
    let (keeping, release, op_id) = (Arc::clone(agent), request.release.clone(), request.op_id);
    let archive = scratch.path().to_owned();
    let kept = blocking(move || keeping.store.keep(&release, op_id, &archive, &written))
        .await?
        .map_err(JobError::Store)?;
    tracing::info!(path = %kept.display(), "local backup kept");
    Ok(written)
}

/// Streams the archive into the upload's parts while the uploader sends them.
async fn central(
    agent: &Arc<Agent>,
    job: &Arc<Job>,
    request: &BackupRequest,
    state: Arc<UploadState>,
) -> Result<(Written, Vec<UploadedPart>), JobError> {
    // One part waits while one goes up: the writer stays at most a part ahead.
    let (sender, receiver) = mpsc::channel(1);
    let mut uploader = tokio::spawn(
        upload::upload_parts(
            Arc::clone(agent),
            Arc::clone(job),
            Arc::clone(&state),
            receiver,
        )
        .in_current_span(),
    );
    let (archiving, archiving_job, release) =
        (Arc::clone(agent), Arc::clone(job), request.release.clone());
    let op_id = request.op_id;
    let archived = blocking(move || {
        let writer = PartWriter::new(Arc::clone(&archiving), op_id, Arc::clone(&state), sender);
        let origin = Origin {
            subcloud: &archiving.name,
            release: &release,
        };
        let (writer, written) = archive::create(&archiving.data, origin, writer, |total| {
            state.fit(total);
            archiving_job.progress.archiving(0, 95, total)
        })?;
        let parts = writer.finish().map_err(ArchiveError::Output)?;
        Ok::<_, ArchiveError>((written, parts))
    })
    .await?;
    let (written, parts) = match archived {
        Ok(archived) => {
            job.progress.archive_written(archived.0.size);
            archived
        }
        Err(error) => {
            // An archive stops when its upload did: the uploader's error is the cause then.
            // Otherwise the uploader has nothing left worth sending.
            match tokio::time::timeout(UPLOADER_GRACE, &mut uploader).await {
                Ok(Ok(Err(upload_error))) => return Err(upload_error),
                Ok(_) => {}
                Err(_) => uploader.abort(),
            }
            return Err(JobError::Archive(error));
        }
    };
    let uploaded = uploader.await.map_err(|_| JobError::Stopped)??;
    tracing::info!(size = written.size, sha256 = %written.sha256, parts, "archive uploaded");
    Ok((written, uploaded))
}
