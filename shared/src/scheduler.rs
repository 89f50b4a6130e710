//! The scheduler (SPEC §5), run every minute by EventBridge. Each run finds the schedules
//! due at its clock through the `due-schedules` index (no scan), claims each firing with the
//! conditional write that advances `next_run` — so overlapping runs and duplicate
//! deliveries fire a schedule once per due time — and starts the backups through
//! `operations::start`, exactly as the API does: busy subclouds are skipped and recorded in
//! `last_run`, never an error. A firing later than its start window is recorded as missed.
//!
//! It also takes an EventBridge Scheduler event naming a target inline in `detail` (for
//! schedules kept in IaC): the detail is parsed as a subcloud-backup create body, and the
//! event's id keys it in the idempotency table, so a redelivered event starts nothing again.

use crate::api::{ApiError, Command, Fields};
use crate::domain::{
    digest_hex, epoch_now, FiringState, LastRun, OpKind, Ref, Schedule, ScheduleTarget, Skipped,
};
use crate::jobs::JobQueue;
use crate::operations::{self, Origin, Started, Starter};
use crate::store::{Begin, Store, StoreError};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// Schedules fired at once by one run.
const FIRING_CONCURRENCY: usize = 8;
/// How long an inline event's id is held while it is handled: the scheduler's Timeout
/// (60 s, infra/template.yaml) and the same margin as the API's keys, so an event whose run
/// died can be handled by EventBridge's next delivery soon after.
const INLINE_EVENT_HOLD_SECONDS: u64 = 60 + crate::config::Config::IDEMPOTENCY_MARGIN_SECONDS;

#[derive(Debug)]
pub struct Scheduler {
    pub inventory: Store,
    pub jobs: JobQueue,
    pub lease_seconds: u64,
    pub claim_concurrency: usize,
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Due schedules whose firing this run claimed and started.
    pub fired: usize,
    /// Due schedules whose firing this run claimed but found past its start window.
    pub missed: usize,
    /// Due schedules whose firing another run had claimed first.
    pub lost: usize,
    /// Operations started, over all firings.
    pub accepted: usize,
    /// Subclouds skipped (busy or not valid), over all firings.
    pub skipped: usize,
}

/// What an inline event did (also the answer replayed for a duplicate delivery).
#[derive(Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InlineReport {
    pub event_id: String,
    /// True when this delivery was a duplicate and started nothing.
    pub duplicate: bool,
    pub op_ids: Vec<String>,
    pub skipped: Vec<Skipped>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why an event could not be handled (EventBridge retries the invocation).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the event has no id to make it idempotent")]
    NoEventId,
    #[error("an earlier delivery of event {0} is still being handled")]
    InProgress(String),
}

impl Scheduler {
    fn starter(&self) -> Starter<'_> {
        Starter {
            inventory: &self.inventory,
            jobs: &self.jobs,
            lease_seconds: self.lease_seconds,
            claim_concurrency: self.claim_concurrency,
        }
    }

    /// Handles one event: an inline target in `detail`, or else a run of due schedules at
    /// the current time.
    pub async fn handle(&self, event: &Value) -> Result<Value, SchedulerError> {
        let detail = event.get("detail").and_then(Value::as_object);
        if detail.is_some_and(|d| d.contains_key("subcloud") || d.contains_key("group")) {
            let report = self.inline(event).await?;
            return Ok(serde_json::to_value(report).unwrap_or_default());
        }
        let report = self.run_at(epoch_now()).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }

    /// Fires every schedule due at `now` (Unix seconds; injected so tests need no waiting).
    pub async fn run_at(&self, now: u64) -> Result<RunReport, StoreError> {
        let due = self.inventory.due_schedules(now).await?;
        let outcomes: Vec<Result<Option<LastRun>, StoreError>> = futures::stream::iter(due)
            .map(|schedule| self.fire(schedule, now))
            .buffer_unordered(FIRING_CONCURRENCY)
            .collect()
            .await;
        let mut report = RunReport::default();
        for outcome in outcomes {
            match outcome? {
                None => report.lost += 1,
                Some(run) if run.state == FiringState::Missed => report.missed += 1,
                Some(run) => {
                    report.fired += 1;
                    report.accepted += run.accepted;
                    report.skipped += run.skipped.len();
                }
            }
        }
        // A run that found nothing due (most of them) is not worth an info line.
        if report == RunReport::default() {
            tracing::debug!("scheduler run done: nothing due");
        } else {
            tracing::info!(
                fired = report.fired,
                missed = report.missed,
                lost = report.lost,
                accepted = report.accepted,
                skipped = report.skipped,
                "scheduler run done"
            );
        }
        Ok(report)
    }

    /// Claims and fires one due schedule; `None` if another run claimed it first.
    async fn fire(&self, schedule: Schedule, now: u64) -> Result<Option<LastRun>, StoreError> {
        let Some(due) = schedule.next_run else {
            return Ok(None);
        };
        let next = match schedule.spec() {
            Ok(spec) => spec.next_after(now.max(due)),
            Err(e) => {
                // Parsed when it was written; a stored one that no longer parses stops.
                tracing::error!(schedule = %schedule.name, error = %e, "schedule does not parse; taken off the index");
                None
            }
        };
        if !self.inventory.claim_firing(schedule.id, due, next).await? {
            return Ok(None);
        }
        let mut run = LastRun {
            due_at: due,
            ran_at: now,
            state: FiringState::Fired,
            op_ids: Vec::new(),
            accepted: 0,
            skipped: Vec::new(),
            error: None,
        };
        if schedule.missed(due, now) {
            run.state = FiringState::Missed;
            tracing::warn!(schedule = %schedule.name, due, now, "firing missed its start window");
        } else {
            let target = match schedule.target {
                ScheduleTarget::Subcloud(id) => crate::api::Target::Subcloud(Ref::Id(id)),
                ScheduleTarget::Group(id) => crate::api::Target::Group(Ref::Id(id)),
            };
            let command = Command {
                kind: OpKind::Create,
                target,
                options: schedule.options.clone(),
                release: None,
                bootstrap: HashMap::new(),
            };
            let origin = Origin {
                requested_by: format!("schedule:{}", schedule.name),
                schedule_id: Some(schedule.id),
                key: None,
            };
            match operations::start(self.starter(), &command, &origin).await {
                Ok(started) => record_started(&mut run, &started),
                Err(e) => {
                    run.state = FiringState::Failed;
                    run.error = Some(e.to_string());
                }
            }
            tracing::info!(schedule = %schedule.name, due, accepted = run.accepted, skipped = run.skipped.len(), "schedule fired");
        }
        self.inventory.record_firing(schedule.id, &run).await?;
        Ok(Some(run))
    }

    /// An EventBridge Scheduler event with the target inline, once per event id.
    pub async fn inline(&self, event: &Value) -> Result<InlineReport, SchedulerError> {
        let event_id = event
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or(SchedulerError::NoEventId)?
            .to_owned();
        let detail = event.get("detail").cloned().unwrap_or_default();
        let key = digest_hex(&format!("scheduler-event:{event_id}"));
        let fingerprint = digest_hex(&detail.to_string());
        match self
            .inventory
            .begin_idempotent(&key, &fingerprint, epoch_now(), INLINE_EVENT_HOLD_SECONDS)
            .await?
        {
            Begin::Replay { body, .. } => {
                let mut report: InlineReport = serde_json::from_str(&body)
                    .map_err(|e| StoreError::decode("inline event answer", e))?;
                report.duplicate = true;
                return Ok(report);
            }
            // The same id with another detail is not a redelivery: EventBridge never does it.
            Begin::Mismatch => {
                return Ok(InlineReport {
                    event_id,
                    duplicate: true,
                    op_ids: Vec::new(),
                    skipped: Vec::new(),
                    error: Some(
                        "an event with this id and another detail was handled already".into(),
                    ),
                })
            }
            Begin::InProgress => return Err(SchedulerError::InProgress(event_id)),
            Begin::New => {}
        }
        let mut report = InlineReport {
            event_id,
            duplicate: false,
            op_ids: Vec::new(),
            skipped: Vec::new(),
            error: None,
        };
        match self.start_inline(&detail, &key).await {
            Ok(started) => {
                let mut run = LastRun {
                    due_at: 0,
                    ran_at: 0,
                    state: FiringState::Fired,
                    op_ids: Vec::new(),
                    accepted: 0,
                    skipped: Vec::new(),
                    error: None,
                };
                record_started(&mut run, &started);
                report.op_ids = run.op_ids.iter().map(ToString::to_string).collect();
                report.skipped = run.skipped;
                report.error = run.error;
            }
            Err(e) => report.error = Some(e.to_string()),
        }
        tracing::info!(event_id = %report.event_id, started = report.op_ids.len(), skipped = report.skipped.len(), error = ?report.error, "inline scheduled event handled");
        let body = serde_json::to_string(&report).unwrap_or_default();
        self.inventory
            .finish_idempotent(&key, &fingerprint, 200, &body, epoch_now())
            .await?;
        Ok(report)
    }

    /// Parses an inline detail as a subcloud-backup create body and starts it.
    /// `key` is the event's idempotency key: a redelivery takes over what a dead attempt
    /// claimed and did not queue.
    async fn start_inline(&self, detail: &Value, key: &str) -> Result<Started, ApiError> {
        let map = detail.as_object().cloned().unwrap_or_default();
        let command = Command::parse(OpKind::Create, None, Fields::from_map(map)?)?;
        let origin = Origin {
            requested_by: "eventbridge-scheduler".into(),
            schedule_id: None,
            key: Some(key.to_owned()),
        };
        Ok(operations::start(self.starter(), &command, &origin).await?)
    }
}

fn record_started(run: &mut LastRun, started: &Started) {
    run.op_ids = started.op_ids.clone();
    run.accepted = started.accepted.len();
    run.skipped = started
        .skipped
        .iter()
        .chain(&started.failed)
        .map(|r| Skipped {
            name: r.name.clone(),
            reason: r.reason.clone(),
        })
        .collect();
}
