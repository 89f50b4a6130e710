//! The agent's jobs by operation id. One job runs at a time; a request naming an op_id that is
//! already known is a redelivery and gets that job back rather than a second one. Finished jobs
//! stay queryable (the newest [`KEPT_JOBS`]) until the agent restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use uuid::Uuid;

use crate::progress::Progress;
use crate::upload::UploadState;
use dcbackup_protocol::{
    BackupRequest, JobKind, JobResult, JobState, JobView, Release, RestoreRequest,
};

/// How many jobs are remembered; the oldest finished ones are forgotten first.
pub(crate) const KEPT_JOBS: usize = 1000;

#[derive(Debug, Clone)]
pub(crate) enum JobRequest {
    Backup(BackupRequest),
    Restore(RestoreRequest),
}

impl JobRequest {
    pub(crate) fn op_id(&self) -> Uuid {
        match self {
            JobRequest::Backup(r) => r.op_id,
            JobRequest::Restore(r) => r.op_id,
        }
    }

    pub(crate) fn kind(&self) -> JobKind {
        match self {
            JobRequest::Backup(_) => JobKind::Backup,
            JobRequest::Restore(_) => JobKind::Restore,
        }
    }

    pub(crate) fn release(&self) -> &Release {
        match self {
            JobRequest::Backup(r) => &r.release,
            JobRequest::Restore(r) => &r.release,
        }
    }

    pub(crate) fn central(&self) -> bool {
        match self {
            JobRequest::Backup(r) => r.upload.is_some(),
            JobRequest::Restore(r) => r.download_url.is_some(),
        }
    }

    /// Whether `other` asks for the same job. The worker may pre-sign a fresh URL for each
    /// delivery of one operation, so URLs are not compared — only what the job does.
    fn same_job(&self, other: &JobRequest) -> bool {
        self.kind() == other.kind()
            && self.release() == other.release()
            && self.central() == other.central()
    }
}

#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) request: JobRequest,
    pub(crate) progress: Progress,
    /// A central backup's upload.
    pub(crate) upload: Option<Arc<UploadState>>,
    /// Set once, when the job ends; until then it runs.
    outcome: OnceLock<Result<JobResult, String>>,
}

impl Job {
    pub(crate) fn op_id(&self) -> Uuid {
        self.request.op_id()
    }

    pub(crate) fn finish(&self, outcome: Result<JobResult, String>) {
        if outcome.is_ok() {
            self.progress.set(100);
        }
        // A job ends once; its runner is the only caller.
        let _ = self.outcome.set(outcome);
    }

    fn running(&self) -> bool {
        self.outcome.get().is_none()
    }

    pub(crate) fn view(&self) -> JobView {
        let (state, error, result) = match self.outcome.get() {
            None => (JobState::Running, None, None),
            Some(Ok(result)) => (JobState::Succeeded, None, Some(result.clone())),
            Some(Err(error)) => (JobState::Failed, Some(error.clone()), None),
        };
        JobView {
            op_id: self.op_id(),
            kind: self.request.kind(),
            state,
            progress: self.progress.get(),
            bytes: self.progress.bytes(),
            upload: self.upload.as_ref().map(|u| u.view()),
            error,
            result,
        }
    }
}

/// What became of a request to start a job.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A new job, which the caller must run.
    New(Arc<Job>),
    /// The job this op_id already names.
    Existing(Arc<Job>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("op_id {op_id} already names a different {kind} request (another kind, release or location); an op_id names one operation")]
    Reused { op_id: Uuid, kind: JobKind },
    #[error("busy: {kind} {op_id} is running and an agent runs one job at a time")]
    Busy { op_id: Uuid, kind: JobKind },
}

#[derive(Debug, Default)]
pub(crate) struct Jobs {
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    jobs: HashMap<Uuid, Arc<Job>>,
    /// Op ids, oldest first.
    order: VecDeque<Uuid>,
    /// The newest job, the only one that can still be running.
    current: Option<Arc<Job>>,
}

impl Jobs {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Nothing panics while holding the lock, and the registry stays consistent if it did.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn admit(&self, request: JobRequest) -> Result<Admission, Refusal> {
        let mut registry = self.registry();
        let op_id = request.op_id();
        if let Some(job) = registry.jobs.get(&op_id) {
            return if job.request.same_job(&request) {
                Ok(Admission::Existing(Arc::clone(job)))
            } else {
                Err(Refusal::Reused {
                    op_id,
                    kind: job.request.kind(),
                })
            };
        }
        if let Some(busy) = registry.running() {
            return Err(busy);
        }
        let upload = match &request {
            JobRequest::Backup(BackupRequest {
                upload: Some(plan), ..
            }) => Some(Arc::new(UploadState::new(plan))),
            _ => None,
        };
        let job = Arc::new(Job {
            request,
            progress: Progress::default(),
            upload,
            outcome: OnceLock::new(),
        });
        registry.jobs.insert(op_id, Arc::clone(&job));
        registry.order.push_back(op_id);
        registry.current = Some(Arc::clone(&job));
        // Only the newest job can be running, so the oldest are finished.
        while registry.order.len() > KEPT_JOBS {
            if let Some(oldest) = registry.order.pop_front() {
                registry.jobs.remove(&oldest);
            }
        }
        Ok(Admission::New(job))
    }

    pub(crate) fn get(&self, op_id: Uuid) -> Option<Arc<Job>> {
        self.registry().jobs.get(&op_id).cloned()
    }

    /// The running job, as the refusal a conflicting request gets.
    pub(crate) fn running(&self) -> Option<Refusal> {
        self.registry().running()
    }
}

impl Registry {
    fn running(&self) -> Option<Refusal> {
        self.current
            .as_ref()
            .filter(|job| job.running())
            .map(|job| Refusal::Busy {
                op_id: job.op_id(),
                kind: job.request.kind(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcbackup_protocol::{Location, Sha256};

    fn backup(op_id: Uuid, release: &str, central: bool) -> JobRequest {
        JobRequest::Backup(BackupRequest {
            op_id,
            release: release.parse().expect("release"),
            upload: central.then(|| dcbackup_protocol::UploadPlan {
                part_size: dcbackup_protocol::MIN_PART_SIZE,
                parts: Vec::new(),
            }),
        })
    }

    fn done(job: &Job) {
        job.finish(Ok(JobResult {
            release: "24.09".parse().expect("release"),
            size: 1,
            sha256: Sha256([0; 32]),
            location: Location::Local,
            parts: Vec::new(),
        }));
    }

    #[test]
    fn one_job_at_a_time_and_one_job_per_op_id() {
        let jobs = Jobs::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let Ok(Admission::New(first)) = jobs.admit(backup(a, "24.09", false)) else {
            panic!("first job");
        };
        assert!(matches!(
            jobs.admit(backup(a, "24.09", false)),
            Ok(Admission::Existing(job)) if Arc::ptr_eq(&job, &first)
        ));
        assert_eq!(
            jobs.admit(backup(b, "24.09", false)).expect_err("busy"),
            Refusal::Busy {
                op_id: a,
                kind: JobKind::Backup
            }
        );
        assert!(matches!(
            jobs.admit(backup(a, "24.09", true)),
            Err(Refusal::Reused { .. })
        ));
        done(&first);
        assert_eq!(first.view().state, JobState::Succeeded);
        assert_eq!(first.view().progress, 100);
        assert!(matches!(
            jobs.admit(backup(b, "24.09", false)),
            Ok(Admission::New(_))
        ));
        assert!(jobs.get(a).is_some(), "finished jobs stay queryable");
    }

    #[test]
    fn forgets_the_oldest_finished_jobs() {
        let jobs = Jobs::default();
        let first = Uuid::new_v4();
        for n in 0..=KEPT_JOBS {
            let op_id = if n == 0 { first } else { Uuid::new_v4() };
            let Ok(Admission::New(job)) = jobs.admit(backup(op_id, "24.09", false)) else {
                panic!("job {n}");
            };
            done(&job);
        }
        assert!(jobs.get(first).is_none());
        assert_eq!(jobs.registry().jobs.len(), KEPT_JOBS);
    }
}
