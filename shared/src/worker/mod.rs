//! The worker (SPEC §4): takes a job from the queue, checks that its operation still holds
//! the subcloud's slot, and drives the operation through its states on the subcloud's agent
//! with conditional writes only. Agent jobs that take longer than a moment are followed by
//! delayed poll messages, so no invocation waits on an agent; each poll that finds the agent
//! at work extends the lease. A duplicate or stale job finds the slot not (or no longer) its
//! own, or its state already past, and changes nothing. Each operation has one poll chain:
//! the conditional write that sends the next poll names it (`poll_seq`, `poll_token` on the
//! subcloud), so a second delivery of a message cannot start a second chain.
//!
//! A central backup is an S3 multipart upload the worker owns: it creates it (its id kept on
//! the operation record), signs the next parts' UploadPart URLs at the start and at each poll,
//! and completes it with the parts the agent reports — or aborts it when the backup fails.
//!
//! This module holds what every operation shares — the batch handler, the slot and poll-chain
//! checks, following an agent job, failing and finishing — and each operation's flow is its
//! own file: `worker/backup.rs` (create, with the central upload), `worker/restore.rs`,
//! `worker/delete.rs`.

mod backup;
mod delete;
mod restore;

use crate::agent_client::{AgentClient, AgentError};
use crate::central::{CentralError, CentralStore};
use crate::domain::{
    epoch_now, AgentUrl, BackupStatus, ClaimedState, DeployStatus, OpId, OpKind, OpState, Ref,
    SlotState, Subcloud,
};
use crate::jobs::{JobMessage, JobQueue, QueueError};
use crate::store::{HandOff, Holder, InventoryError, Outcome, Seat, Store, StoreError};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use dcbackup_protocol::{JobState, JobView};
use std::sync::OnceLock;
use std::time::Duration;

/// How many unanswered starts of an agent job are asked again before the operation fails.
pub const START_TRIES: u32 = 5;
/// How many parts ahead of a central backup's upload the worker signs URLs by default, at the
/// start and at every poll (fresh each time, so none is much older than a poll when used).
pub const PART_URLS_AHEAD: u32 = 16;
/// The pause before the next poll when the agent waits for part URLs.
const STARVED_POLL: Duration = Duration::from_secs(1);

/// Why a message must be delivered again (the work is not lost: SQS redelivers it, and after
/// too many tries it lands on the dead-letter queue).
#[derive(Debug, thiserror::Error)]
pub enum Retry {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The subcloud could not be read.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Central(#[from] CentralError),
    /// The next poll could not be queued.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A poll delivered before the write that hands the chain to it, which may still land.
    #[error("poll {attempt} of operation {op_id} is not handed on yet (the chain is at {live})")]
    NotHandedOn {
        op_id: OpId,
        attempt: u32,
        live: u32,
    },
    /// The job's operation id is not a UUID (the agent keys its jobs by one).
    #[error("operation id {op_id} is not a UUID: {source}")]
    OpId {
        op_id: OpId,
        #[source]
        source: uuid::Error,
    },
    /// The presigned download URL is not one the agent takes.
    #[error("the download URL of {key} is not one the agent takes: {reason}")]
    DownloadUrl { key: String, reason: String },
}

#[derive(Debug)]
pub struct Worker {
    pub inventory: Store,
    pub jobs: JobQueue,
    pub central: CentralStore,
    pub agents: AgentClient,
    pub lease_seconds: u64,
    /// The longest pause between two polls of an agent job.
    pub poll_cap: Duration,
    /// How many operations may run on agents at once, system-wide.
    pub max_running: u64,
    /// Bytes per part of a central backup's upload.
    pub part_size: u64,
    /// How many parts ahead of the upload part URLs are signed ([`PART_URLS_AHEAD`]).
    pub part_urls_ahead: u32,
}

impl Worker {
    /// One SQS batch: every message handled; the ones to retry reported as item failures so
    /// the others are not delivered again.
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let handled = event.records.into_iter().map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let body = record.body.unwrap_or_default();
            match serde_json::from_str::<JobMessage>(&body) {
                Ok(job) if JobMessage::readable(job.version) => match self.handle(&job).await {
                    Ok(()) => None,
                    Err(retry) => {
                        tracing::warn!(op_id = %job.op_id, error = %retry, "job will be retried");
                        Some(id)
                    }
                },
                // Nothing can act on a message this worker cannot read: retrying it would
                // only move it to the dead-letter queue later.
                Ok(job) => {
                    tracing::error!(op_id = %job.op_id, version = job.version, "job of an unknown version dropped");
                    None
                }
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "unreadable job dropped");
                    None
                }
            }
        });
        let failures = futures::future::join_all(handled)
            .await
            .into_iter()
            .flatten()
            .map(|item_identifier| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = item_identifier;
                failure
            })
            .collect();
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures;
        response
    }

    /// Drives one job a step further.
    pub async fn handle(&self, job: &JobMessage) -> Result<(), Retry> {
        let now = epoch_now();
        let sc = match self.inventory.subcloud(&Ref::Id(job.subcloud_id)).await {
            Ok(sc) => sc,
            Err(InventoryError::SubcloudNotFound(_)) => {
                tracing::info!(op_id = %job.op_id, "subcloud gone; job dropped");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let ours = sc.op_id.as_ref() == Some(&job.op_id)
            && sc.fence == job.fence
            && sc.lease_expires_at.is_some_and(|lease| lease > now);
        if !ours {
            tracing::info!(op_id = %job.op_id, subcloud = %sc.name, "slot not held by this job; dropped");
            return Ok(());
        }
        let live = sc.poll_seq.unwrap_or(0);
        if job.attempt != live || job.poll_token != sc.poll_token {
            // Sent before the write that hands the chain to it: that write may still land.
            if job.attempt > live {
                return Err(Retry::NotHandedOn {
                    op_id: job.op_id.clone(),
                    attempt: job.attempt,
                    live,
                });
            }
            tracing::info!(op_id = %job.op_id, attempt = job.attempt, live, "not the live message of the poll chain; dropped");
            return Ok(());
        }
        // The operation starts here: its record leaves the claim for the operations table,
        // before anything writes to it.
        if job.attempt == 0 {
            self.inventory.keep_record(&sc).await?;
        }
        // A create before this one whose lease expired may have left an upload behind.
        if let Some(orphan) = &sc.orphan_upload {
            crate::sweeper::discard_orphan(&self.inventory, &self.central, &sc, orphan).await;
        }
        let step = Step {
            worker: self,
            job,
            holder: Holder {
                subcloud_id: sc.id,
                op_id: job.op_id.clone(),
                fence: job.fence,
            },
            sc: &sc,
            seat: sc.seat.map(OnceLock::from).unwrap_or_default(),
        };
        match job.kind {
            OpKind::Create => step.create().await,
            OpKind::Restore => step.restore().await,
            OpKind::Delete => step.delete().await,
        }
    }
}

/// An agent job the worker follows, and the state the operation holds meanwhile.
#[derive(Debug, Clone, Copy)]
enum Followed {
    Backup,
    Restore,
}

impl Followed {
    /// The state the operation holds while the agent job is being started.
    fn preparing(self) -> ClaimedState {
        match self {
            Followed::Backup => ClaimedState::Backup(BackupStatus::PreBackup),
            Followed::Restore => ClaimedState::Deploy(DeployStatus::pre_restore()),
        }
    }

    /// The state the operation holds while the agent job runs.
    fn running(self) -> ClaimedState {
        match self {
            Followed::Backup => ClaimedState::Backup(BackupStatus::BackingUp),
            Followed::Restore => ClaimedState::Deploy(DeployStatus::restoring()),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Followed::Backup => "backup",
            Followed::Restore => "restore",
        }
    }
}

/// One job against the subcloud as it was read.
struct Step<'a> {
    worker: &'a Worker,
    job: &'a JobMessage,
    holder: Holder,
    sc: &'a Subcloud,
    /// The group whose seat the operation holds, once it holds one.
    seat: OnceLock<u64>,
}

impl Step<'_> {
    fn name(&self) -> &str {
        self.sc.name.as_str()
    }

    /// Where the agent is reached: the restore's bootstrap address on the registered port,
    /// else the registered agent address.
    fn agent(&self) -> Result<AgentUrl, String> {
        let registered = self
            .sc
            .agent_url
            .clone()
            .ok_or_else(|| format!("subcloud {} has no registered agent-url", self.name()))?;
        match self.job.bootstrap_address {
            Some(ip) => registered.with_host(ip).map_err(|e| e.to_string()),
            None => Ok(registered),
        }
    }

    async fn advance(&self, state: &ClaimedState) -> Result<bool, Retry> {
        let now = epoch_now();
        let advanced = self
            .worker
            .inventory
            .advance(&self.holder, state, now, self.worker.lease_seconds, None)
            .await?;
        if !advanced {
            tracing::info!(op_id = %self.job.op_id, "slot lost; job stops");
        }
        Ok(advanced)
    }

    /// Ends the operation: the outcome, the freed slot, its record and its seat, in one
    /// transaction.
    async fn finish(&self, outcome: Outcome, state: OpState) -> Result<(), Retry> {
        let seat = self.seat();
        let ended = self
            .worker
            .inventory
            .finish(&self.holder, &outcome, state, seat, epoch_now())
            .await?;
        if ended {
            tracing::info!(op_id = %self.job.op_id, subcloud = %self.name(), state = ?state, "operation finished");
        } else {
            tracing::info!(op_id = %self.job.op_id, "slot lost before finishing; nothing written");
        }
        Ok(())
    }

    /// The group whose seat this operation holds, if any.
    fn seat(&self) -> Option<u64> {
        self.seat.get().copied()
    }

    /// Takes a seat (group cap and global cap) unless this operation holds one. Returns
    /// whether the operation may start now; if not, it keeps its slot (the lease is
    /// extended in its current `state`) and is polled again later.
    async fn seated(&self, state: &ClaimedState) -> Result<bool, Retry> {
        if self.seat().is_some() {
            return Ok(true);
        }
        let seat = self
            .worker
            .inventory
            .take_seat(
                &self.holder,
                self.sc.group_id,
                self.worker.max_running,
                epoch_now(),
                self.worker.lease_seconds,
            )
            .await?;
        match seat {
            Seat::Taken => {
                // Only taken while none is held (above), so it is never set twice.
                let _ = self.seat.set(self.sc.group_id);
                Ok(true)
            }
            Seat::Full => {
                tracing::info!(op_id = %self.job.op_id, group = self.sc.group_id, "no free seat; waiting");
                self.poll_later(Some(state), 0).await?;
                Ok(false)
            }
            Seat::Lost => {
                tracing::info!(op_id = %self.job.op_id, "slot lost; job stops");
                Ok(false)
            }
        }
    }

    /// Ends the operation as failed in `state`; a central backup's upload is aborted.
    async fn fail(&self, state: SlotState, why: String) -> Result<(), Retry> {
        if self.central_create() {
            self.abort_upload().await;
        }
        let outcome = Outcome {
            error: Some(why),
            ..Outcome::ending(state)
        };
        self.finish(outcome, OpState::Failed).await
    }

    /// Asks for this job again after a pause that grows with each poll, up to the cap, and
    /// hands the poll chain to that message: with `state`, in the write that moves the state
    /// on and extends the lease; without, leaving both. `start_tries`: unanswered starts so
    /// far. Returns false (and changes nothing) if another delivery of this message handed
    /// the chain on first or the slot is lost; the message sent then is dropped on arrival.
    async fn poll_later(
        &self,
        state: Option<&ClaimedState>,
        start_tries: u32,
    ) -> Result<bool, Retry> {
        let delay = Duration::from_secs(1u64 << self.job.attempt.min(10)).min(self.worker.poll_cap);
        self.poll_in(state, start_tries, delay).await
    }

    /// [`Step::poll_later`] after `delay`.
    async fn poll_in(
        &self,
        state: Option<&ClaimedState>,
        start_tries: u32,
        delay: Duration,
    ) -> Result<bool, Retry> {
        let token = uuid::Uuid::new_v4().to_string();
        let next = JobMessage {
            attempt: self.job.attempt + 1,
            poll_token: Some(token.clone()),
            start_tries,
            ..self.job.clone()
        };
        // Sent first: a delivery that dies before the write leaves the chain where it was,
        // so this message's redelivery carries it on.
        self.worker.jobs.send_delayed(&next, delay).await?;
        let hand_off = HandOff {
            from: self.job.attempt,
            token,
        };
        let now = epoch_now();
        let inventory = &self.worker.inventory;
        let handed = match state {
            Some(state) => {
                inventory
                    .advance(
                        &self.holder,
                        state,
                        now,
                        self.worker.lease_seconds,
                        Some(&hand_off),
                    )
                    .await?
            }
            None => inventory.hand_on(&self.holder, now, &hand_off).await?,
        };
        if !handed {
            tracing::info!(op_id = %self.job.op_id, attempt = self.job.attempt, "poll chain handed on by another delivery, or slot lost; this one stops");
        }
        Ok(handed)
    }

    /// The agent job has started: the operation is running (its record says since when)
    /// and is followed by polls.
    async fn started(&self, followed: Followed) -> Result<(), Retry> {
        if self.poll_later(Some(&followed.running()), 0).await? {
            self.worker
                .inventory
                .set_operation_running(&self.job.op_id)
                .await?;
        }
        Ok(())
    }

    /// A start the agent did not answer may have started the job: it is asked again on the
    /// next poll (the agent answers the same op id with the same job), up to `START_TRIES`.
    /// Any other error (the agent refused, or could not be reached at all) is final.
    async fn start_failed(&self, followed: Followed, e: AgentError) -> Result<(), Retry> {
        let tries = self.job.start_tries + 1;
        match e {
            AgentError::NoAnswer { .. } if tries < START_TRIES => {
                tracing::warn!(op_id = %self.job.op_id, error = %e, tries, "start not answered; asked again on the next poll");
                self.poll_later(None, tries).await.map(drop)
            }
            AgentError::NoAnswer { .. } => {
                let why = format!("{e} ({tries} starts of the {} unanswered)", followed.noun());
                self.fail_prep(followed, why).await
            }
            e => self.fail_prep(followed, e.to_string()).await,
        }
    }

    async fn fail_prep(&self, followed: Followed, why: String) -> Result<(), Retry> {
        self.fail(followed.preparing().failed(), why).await
    }

    /// The backup's progress in bytes, as the agent reports it, on the operation record.
    async fn record_bytes(&self, view: &JobView) -> Result<(), Retry> {
        self.worker
            .inventory
            .set_operation_bytes(&self.job.op_id, &view.bytes)
            .await?;
        // And on the subcloud's `operation`, while it holds the slot.
        self.worker
            .inventory
            .set_slot_bytes(&self.holder, &view.bytes)
            .await?;
        Ok(())
    }

    async fn fail_followed(&self, followed: Followed, why: String) -> Result<(), Retry> {
        self.fail(followed.running().failed(), why).await
    }

    /// One poll of the agent job: still running (lease extended, polled again), failed, or
    /// done.
    async fn follow(&self, agent: &AgentUrl, followed: Followed) -> Result<(), Retry> {
        let polled = self
            .worker
            .agents
            .job(agent, self.name(), self.job.op_id.as_str())
            .await;
        let view = match polled {
            Ok(Some(view)) => view,
            Ok(None) => {
                let why = format!(
                    "the agent of {} no longer knows the {} (it restarted)",
                    self.name(),
                    followed.noun()
                );
                return self.fail_followed(followed, why).await;
            }
            // Not extended: if the agent stays away, the lease runs out and the slot is
            // recovered as failed.
            Err(e) => {
                tracing::warn!(op_id = %self.job.op_id, error = %e, "agent not reachable; polling again");
                return self.poll_later(None, 0).await.map(drop);
            }
        };
        match view.state {
            JobState::Running => {
                let starved = match &view.upload {
                    Some(upload) => self.hand_part_urls(agent, upload).await?,
                    None => false,
                };
                let still_ours = if starved {
                    self.poll_in(
                        Some(&followed.running()),
                        0,
                        STARVED_POLL.min(self.worker.poll_cap),
                    )
                    .await?
                } else {
                    self.poll_later(Some(&followed.running()), 0).await?
                };
                if still_ours {
                    if let Followed::Backup = followed {
                        self.record_bytes(&view).await?;
                    }
                }
                Ok(())
            }
            JobState::Failed => {
                let why = view
                    .error
                    .unwrap_or_else(|| format!("the agent's {} failed", followed.noun()));
                self.fail_followed(followed, why).await
            }
            JobState::Succeeded => match followed {
                Followed::Backup => self.backup_done(view).await,
                Followed::Restore => {
                    let outcome = Outcome::ending(SlotState::Deploy(DeployStatus::complete()));
                    self.finish(outcome, OpState::Succeeded).await
                }
            },
        }
    }
}

fn op_uuid(job: &JobMessage) -> Result<uuid::Uuid, Retry> {
    uuid::Uuid::parse_str(job.op_id.as_str()).map_err(|source| Retry::OpId {
        op_id: job.op_id.clone(),
        source,
    })
}
