//! The agent itself: its checked configuration and the jobs it runs. Each job runs on its own
//! task; its blocking work (archiving, hashing, extracting, swapping directories) on tokio's
//! blocking threads so requests are answered meanwhile. However a job ends — even by a panic —
//! its outcome is recorded, so the agent never stays busy with a job that is gone.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::archive::ArchiveError;
use crate::auth::Verifier;
use crate::config::{self, Config, ConfigError, DataDir};
use crate::jobs::{Admission, Job, JobRequest, Jobs, Refusal};
use crate::restore::ReplaceError;
use crate::store::Store;
use crate::transfer::{TransferError, Transfers};
use crate::{backup, restore};
use dcbackup_protocol::Secret;
use dcbackup_protocol::{JobResult, Release, Sha256};

/// One subcloud's agent: build it with [`Agent::new`], serve it with [`crate::serve`].
pub struct Agent {
    pub(crate) name: String,
    pub(crate) data: Vec<DataDir>,
    pub(crate) store: Store,
    pub(crate) verifier: Verifier,
    pub(crate) transfers: Transfers,
    pub(crate) jobs: Jobs,
    /// HTTPS; plain HTTP when `None`.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Why a job failed; the message is the job's `error`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    #[error("cannot write the archive: {0}")]
    Archive(ArchiveError),
    #[error("archive rejected, data dirs untouched: {0}")]
    Rejected(ArchiveError),
    #[error("upload of part {number} failed: {why}")]
    Part { number: u32, why: String },
    #[error("download from {url} failed: {source}")]
    Download { url: String, source: TransferError },
    #[error("no local backup of release {0}")]
    NoLocalBackup(Release),
    #[error("archive digest mismatch, data dirs untouched: expected {expected}, got {actual}")]
    Digest { expected: Sha256, actual: Sha256 },
    #[error("local store: {0}")]
    Store(std::io::Error),
    #[error(transparent)]
    Replace(#[from] ReplaceError),
    #[error("internal error: the job stopped unexpectedly")]
    Stopped,
}

impl Agent {
    /// Reads the secrets and TLS files and checks and prepares the directories. Logs nothing: the caller
    /// prints the listening address first.
    pub fn new(config: &Config) -> Result<Agent, ConfigError> {
        let mut secrets = vec![Secret::read(&config.secret_file)?];
        if let Some(previous) = &config.previous_secret_file {
            secrets.push(Secret::read(previous)?);
        }
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let (data, store_root) = config::directories(&config.data, &config.store)?;
        let store = Store::open(&store_root).map_err(|source| ConfigError::Store {
            path: store_root.clone(),
            source,
        })?;
        Ok(Agent {
            verifier: Verifier::new(&secrets, &config.name),
            name: config.name.clone(),
            data,
            store,
            transfers: Transfers::default(),
            jobs: Jobs::default(),
            tls,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `https` when the agent serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Admits a job and, if it is new, starts it.
    pub(crate) fn start(self: &Arc<Self>, request: JobRequest) -> Result<Admission, Refusal> {
        let admission = self.jobs.admit(request.clone())?;
        match &admission {
            Admission::New(job) => self.spawn(Arc::clone(job)),
            Admission::Existing(job) => {
                tracing::info!(op_id = %job.op_id(), "duplicate request: returning the existing job");
                // A start asked again comes with freshly signed part URLs: worth keeping.
                if let (Some(upload), JobRequest::Backup(request)) = (&job.upload, &request) {
                    if let Some(plan) = &request.upload {
                        upload.add(&plan.parts);
                    }
                }
            }
        }
        Ok(admission)
    }

    fn spawn(self: &Arc<Self>, job: Arc<Job>) {
        let span = tracing::info_span!("job", op_id = %job.op_id(), kind = %job.request.kind());
        let agent = Arc::clone(self);
        tokio::spawn(
            async move {
                let started = Instant::now();
                let request = &job.request;
                tracing::info!(release = %request.release(), central = request.central(), "job started");
                let work = tokio::spawn(Arc::clone(&agent).run(Arc::clone(&job)).in_current_span());
                let outcome = match work.await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(JobError::Stopped),
                };
                let seconds = started.elapsed().as_secs_f64();
                match &outcome {
                    Ok(result) => tracing::info!(
                        seconds,
                        size = result.size,
                        sha256 = %result.sha256,
                        location = %result.location,
                        "job succeeded"
                    ),
                    Err(error) => tracing::warn!(seconds, %error, "job failed"),
                }
                job.finish(outcome.map_err(|e| e.to_string()));
            }
            .instrument(span),
        );
    }

    async fn run(self: Arc<Self>, job: Arc<Job>) -> Result<JobResult, JobError> {
        match job.request.clone() {
            JobRequest::Backup(request) => backup::run(self, job, request).await,
            JobRequest::Restore(request) => restore::run(self, job, request).await,
        }
    }

    /// Deletes the local backups of `release`, unless a job is running.
    pub(crate) async fn delete_local(
        self: &Arc<Self>,
        release: Release,
    ) -> Result<usize, DeleteError> {
        // The worker never overlaps operations on one subcloud; refusing here makes a mistaken
        // overlap visible instead of deleting a backup a running restore is about to read.
        if let Some(busy) = self.jobs.running() {
            return Err(DeleteError::Busy(busy));
        }
        let agent = Arc::clone(self);
        let deleted = blocking(move || agent.store.delete(&release))
            .await
            .map_err(|_| DeleteError::Stopped)?
            .map_err(DeleteError::Store)?;
        Ok(deleted)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeleteError {
    #[error(transparent)]
    Busy(Refusal),
    #[error("cannot delete the local backups: {0}")]
    Store(std::io::Error),
    #[error("internal error: the delete stopped unexpectedly")]
    Stopped,
}

/// Runs blocking work on tokio's blocking threads, inside the caller's span (so its logs
/// carry the job's op_id); `Err` if it panicked.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .map_err(|_| JobError::Stopped)
}
