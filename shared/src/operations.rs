//! The one way to start operations (SPEC §3, §5): each target subcloud's slot is claimed by
//! one conditional write that also keeps its operation's record, group members up to
//! `claim_concurrency` at once; each ten claims then get their jobs on the queue (one
//! SendMessageBatch), and a claim whose job cannot be sent is rolled back at once. A single
//! subcloud is claimed without reading it first. The API handlers and the scheduler both
//! call `start`; nothing else claims a slot.

use crate::api::{Command, ReasonStatus, SubcloudReason, Target};
use crate::domain::{
    epoch_now, timestamp_now, BackupStatus, Group, Name, OpId, OpKind, OpState, Operation, Ref,
    SlotHolder, SlotState, Subcloud,
};
use crate::jobs::{JobMessage, JobQueue, SEND_BATCH_MAX};
use crate::store::{ClaimOutcome, ClaimRequest, InventoryError, Store, StoreError};
use futures::StreamExt;
use std::net::IpAddr;

/// What `start` needs: the store, the jobs queue and two settings.
#[derive(Debug, Clone, Copy)]
pub struct Starter<'a> {
    pub inventory: &'a Store,
    pub jobs: &'a JobQueue,
    /// How long a claimed slot is held before it may be recovered.
    pub lease_seconds: u64,
    /// About how many members of a group are claimed at once (rounded up to whole batches
    /// of `jobs::SEND_BATCH_MAX`).
    pub claim_concurrency: usize,
}

/// Who asked, recorded on every operation started.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The caller's `sub`, or `schedule:<name>` for a scheduled firing.
    pub requested_by: String,
    /// The schedule that fired it, if any (its backups are subject to its retention).
    pub schedule_id: Option<u64>,
    /// The request's scoped `Idempotency-Key` (or inline event id) digest, if it has one: a
    /// retry under the same key takes over the claims its dead first attempt left unqueued
    /// (`ClaimRequest::key`).
    pub key: Option<String>,
}

/// What `start` did with each subcloud of the target.
#[derive(Debug, Default)]
pub struct Started {
    /// The group targeted, if the target was a group.
    pub group: Option<Group>,
    /// Every subcloud of the target as it stands after the request, by id: the accepted in
    /// their claimed state, the others as their claim found them (SPEC §3, dcmanager's
    /// answer); a member deleted meanwhile, or whose claim could not reach the store, is left
    /// out.
    pub members: Vec<Subcloud>,
    /// Claimed, recorded and queued: in their claimed state, by id.
    pub accepted: Vec<Subcloud>,
    /// Not claimed: busy, not valid for the operation, or gone (by id).
    pub skipped: Vec<SubcloudReason>,
    /// Claimed but not handed over (rolled back), or the claim itself failed (by id).
    pub failed: Vec<SubcloudReason>,
    /// The operations started, in the order of `accepted`.
    pub op_ids: Vec<OpId>,
}

/// Why nothing could be started at all.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The target does not exist, or the store failed reading it.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The group has no members.
    #[error("Group {0} has no subclouds")]
    EmptyGroup(String),
}

/// One target subcloud's fate.
enum Verdict {
    Accepted {
        subcloud: Box<Subcloud>,
        prior: SlotState,
        /// Where a restore reaches the agent instead of its registered address.
        bootstrap_address: Option<IpAddr>,
    },
    /// Not taken; the subcloud as it stands, unless it is gone.
    Refused(SubcloudReason, Option<Box<Subcloud>>),
}

/// What became of one batch of claims.
struct Handed {
    /// Claimed, recorded and queued.
    accepted: Vec<Subcloud>,
    /// Claimed but rolled back: the job could not be queued.
    failed: Vec<SubcloudReason>,
    /// Not claimed, and the subcloud as the claim found it (unless gone).
    refused: Vec<SubcloudReason>,
    standing: Vec<Subcloud>,
}

/// Hands one batch of claim verdicts over: the claimed get their jobs.
async fn hand_over_batch(starter: Starter<'_>, verdicts: Vec<Verdict>) -> Handed {
    let mut claimed = Vec::new();
    let mut refused = Vec::new();
    let mut standing = Vec::new();
    for verdict in verdicts {
        match verdict {
            Verdict::Accepted {
                subcloud,
                prior,
                bootstrap_address,
            } => match (Operation::queued(&subcloud), &subcloud.op_request) {
                (Some(record), Some(request)) => claimed.push(Claimed {
                    expires_at: request.expires_at,
                    subcloud: *subcloud,
                    prior,
                    record,
                    bootstrap_address,
                }),
                _ => refused.push(reason(
                    &subcloud,
                    ReasonStatus::Failed,
                    "the claim kept no operation record; try again".into(),
                )),
            },
            Verdict::Refused(r, sc) => {
                refused.push(r);
                standing.extend(sc.map(|sc| *sc));
            }
        }
    }
    let (accepted, failed) = hand_over(starter, claimed).await;
    let (failed, rolled_back): (Vec<_>, Vec<_>) = failed.into_iter().unzip();
    standing.extend(rolled_back.into_iter().flatten());
    Handed {
        accepted,
        failed,
        refused,
        standing,
    }
}

/// A claimed and recorded subcloud on its way to the queue.
struct Claimed {
    subcloud: Subcloud,
    prior: SlotState,
    /// The record the claim keeps, and when it expires (Unix seconds).
    record: Operation,
    expires_at: u64,
    bootstrap_address: Option<IpAddr>,
}

fn reason(sc: &Subcloud, status: ReasonStatus, reason: String) -> SubcloudReason {
    SubcloudReason {
        id: sc.id,
        name: sc.name.to_string(),
        status,
        reason,
    }
}

/// Starts a command's operations: claims, records, queues. Busy and invalid subclouds are
/// skipped, never an error; only a target that cannot be read is.
pub async fn start(
    starter: Starter<'_>,
    command: &Command,
    origin: &Origin,
) -> Result<Started, StartError> {
    let now = epoch_now();
    let (batches, group) = match &command.target {
        Target::Subcloud(r) => {
            let (request, outcome) = claim_named(starter, command, origin, r, now).await?;
            let name = r.to_string();
            let verdict = verdict(command, request.subcloud_id, &name, Ok(outcome));
            let batch = hand_over_batch(starter, vec![verdict]).await;
            (vec![batch], None)
        }
        Target::Group(r) => {
            let group = starter.inventory.group(r).await?;
            let members = starter.inventory.member_names(group.id).await?;
            if members.is_empty() {
                return Err(StartError::EmptyGroup(group.name.to_string()));
            }
            let of = Of {
                name: Some(group.name.to_string()),
                id: Some(group.id),
            };
            // Each batch's jobs go out as soon as its claims complete, so the queue's calls
            // overlap the claims instead of following them all.
            let in_flight = starter.claim_concurrency.div_ceil(SEND_BATCH_MAX).max(1);
            let batches = futures::stream::iter(members)
                .chunks(SEND_BATCH_MAX)
                .map(|batch| {
                    let of = &of;
                    async move {
                        let verdicts = batch.into_iter().map(|(id, name)| async move {
                            let target = (id, Some(&name));
                            let request = prepare(starter, command, origin, target, of, now);
                            let outcome = starter.inventory.claim(&request).await;
                            verdict(command, id, name.as_str(), outcome)
                        });
                        let verdicts = futures::future::join_all(verdicts).await;
                        hand_over_batch(starter, verdicts).await
                    }
                })
                .buffer_unordered(in_flight)
                .collect()
                .await;
            (batches, Some(group))
        }
    };
    let mut accepted = Vec::new();
    let mut failed = Vec::new();
    let mut refused = Vec::new();
    let mut standing = Vec::new();
    for batch in batches {
        accepted.extend(batch.accepted);
        failed.extend(batch.failed);
        refused.extend(batch.refused);
        standing.extend(batch.standing);
    }
    accepted.sort_by_key(|sc| sc.id);
    refused.extend(failed);
    refused.sort_by_key(|r| r.id);
    let (failed, skipped): (Vec<_>, Vec<_>) = refused
        .into_iter()
        .partition(|r| r.status == ReasonStatus::Failed);
    standing.extend(accepted.iter().cloned());
    standing.sort_by_key(|sc| sc.id);
    let members = standing;
    let op_ids = accepted.iter().filter_map(|sc| sc.op_id.clone()).collect();
    Ok(Started {
        group,
        members,
        accepted,
        skipped,
        failed,
        op_ids,
    })
}

/// The group a request targeted, if it did.
struct Of {
    name: Option<String>,
    id: Option<u64>,
}

/// Claims the one subcloud `r` names, without reading it: an id as given, a name by this
/// instance's cached id (the claim's condition checks the name; a stale id finds it gone,
/// and the name is resolved again) or its reservation. The claim request, and its outcome.
async fn claim_named(
    starter: Starter<'_>,
    command: &Command,
    origin: &Origin,
    r: &Ref,
    now: u64,
) -> Result<(ClaimRequest, ClaimOutcome), StartError> {
    let inventory = starter.inventory;
    let alone = Of {
        name: None,
        id: None,
    };
    let name = match r {
        Ref::Name(name) => Some(name.clone()),
        // A restore's bootstrap addresses are given by name: its claim must know the name.
        Ref::Id(_) if command.kind == OpKind::Restore && !command.bootstrap.is_empty() => {
            Some(inventory.subcloud(r).await?.name)
        }
        Ref::Id(_) => None,
    };
    let name = name.as_ref();
    let claim = |id: u64| {
        let request = prepare(starter, command, origin, (id, name), &alone, now);
        async move {
            let outcome = inventory.claim(&request).await;
            outcome
                .map(|outcome| (request, outcome))
                .map_err(|e| StartError::Inventory(e.into()))
        }
    };
    if let Some(name) = name {
        if let Some(id) = inventory.cached_subcloud_id(name) {
            match claim(id).await? {
                (_, ClaimOutcome::Gone) => inventory.forget_subcloud_name(name),
                claimed => return Ok(claimed),
            }
        }
    }
    match inventory
        .subcloud_id(r)
        .await
        .map_err(InventoryError::from)?
    {
        Some(id) => claim(id).await,
        None => Err(StartError::Inventory(InventoryError::SubcloudNotFound(
            r.clone(),
        ))),
    }
}

/// The claim of subcloud `subcloud_id` (named `name`, when known) a command makes.
fn prepare(
    starter: Starter<'_>,
    command: &Command,
    origin: &Origin,
    (subcloud_id, name): (u64, Option<&Name>),
    of: &Of,
    now: u64,
) -> ClaimRequest {
    ClaimRequest {
        name: name.cloned(),
        options: command.options.clone(),
        release: command.named_release(),
        group_id: of.id,
        has_bootstrap_address: name
            .is_some_and(|name| command.bootstrap.contains_key(name.as_str())),
        key: origin.key.clone(),
        requested_by: origin.requested_by.clone(),
        group: of.name.clone(),
        schedule_id: origin.schedule_id,
        ..ClaimRequest::new(subcloud_id, command.kind, now, starter.lease_seconds)
    }
}

/// One target subcloud's fate, from its claim's outcome: subcloud `id`, named `name` in the
/// request. A subcloud whose claim failed or kept losing races is not in `members`: how it
/// stands is not known.
fn verdict(
    command: &Command,
    id: u64,
    name: &str,
    outcome: Result<ClaimOutcome, StoreError>,
) -> Verdict {
    let refused = |status, why, standing: Option<Box<Subcloud>>| {
        // The stored name, when the claim found the subcloud (the request may give an id).
        let name = standing.as_ref().map_or(name, |sc| sc.name.as_str());
        let reason = SubcloudReason {
            id,
            name: name.to_owned(),
            status,
            reason: why,
        };
        Verdict::Refused(reason, standing)
    };
    match outcome {
        Ok(ClaimOutcome::Claimed { subcloud, prior }) => Verdict::Accepted {
            bootstrap_address: command.bootstrap.get(subcloud.name.as_str()).copied(),
            subcloud,
            prior,
        },
        Ok(ClaimOutcome::Busy { subcloud, holder }) => {
            let why = busy_reason(command.kind, &subcloud, &holder);
            refused(ReasonStatus::Busy, why, Some(subcloud))
        }
        Ok(ClaimOutcome::Contended { name }) => refused(
            ReasonStatus::Busy,
            format!("Subcloud {name} changed while it was being claimed; try again"),
            None,
        ),
        Ok(ClaimOutcome::Invalid {
            subcloud,
            reason: why,
        }) => refused(ReasonStatus::Invalid, why, Some(subcloud)),
        Ok(ClaimOutcome::Gone) => refused(
            ReasonStatus::Gone,
            format!("Subcloud {name} no longer exists"),
            None,
        ),
        Err(e) => {
            tracing::error!(error = %e, subcloud = %name, "claim failed");
            refused(
                ReasonStatus::Failed,
                "the database is unavailable; try again".into(),
                None,
            )
        }
    }
}

/// dcmanager's words for a subcloud whose slot another operation holds, naming the state
/// that operation set: backup-status for a backup or delete, deploy-status for a restore.
fn busy_reason(requested: OpKind, sc: &Subcloud, holder: &SlotHolder) -> String {
    let state = match holder.kind.claimed_state().current(sc) {
        SlotState::Backup(b) => format!(
            "backup_status is '{}'",
            b.map_or("none", BackupStatus::as_str)
        ),
        SlotState::Deploy(d) => format!("deploy_status is '{}'", d.as_str()),
    };
    format!(
        "Cannot perform {requested} operation: Subcloud {} current {state}. Please wait until \
         it finishes before running this operation.",
        sc.name
    )
}

/// Sends the jobs of the claimed (and recorded) subclouds. A claim whose job could not be
/// sent is rolled back and reported as failed, with the subcloud as it stands then.
async fn hand_over(
    starter: Starter<'_>,
    claimed: Vec<Claimed>,
) -> (Vec<Subcloud>, Vec<(SubcloudReason, Option<Subcloud>)>) {
    if claimed.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let jobs: Vec<JobMessage> = claimed
        .iter()
        .map(|c| JobMessage::for_operation(&c.record, c.bootstrap_address))
        .collect();
    let sent = starter.jobs.send_all(&jobs).await;
    let mut accepted = Vec::new();
    let mut unsent = Vec::new();
    for (c, result) in claimed.into_iter().zip(sent) {
        match result {
            Ok(()) => {
                tracing::info!(op_id = %c.record.op_id, subcloud = %c.subcloud.name, kind = c.record.kind.as_str(), "operation queued");
                accepted.push(c.subcloud);
            }
            Err(why) => {
                tracing::error!(op_id = %c.record.op_id, subcloud = %c.subcloud.name, error = %why, "job not queued");
                unsent.push(c);
            }
        }
    }
    let failed = undo(starter, unsent, "the job could not be queued; try again").await;
    (accepted, failed)
}

/// Undoes claims whose jobs will never run, all at once: each operation's record is
/// written as failed, then its claim released, then the subcloud read as it stands (for the
/// answer). If the record or the release cannot be written, the lease expires and the slot
/// is recovered by the next claim (or the sweeper), which records the operation as failed.
async fn undo(
    starter: Starter<'_>,
    claims: Vec<Claimed>,
    why: &str,
) -> Vec<(SubcloudReason, Option<Subcloud>)> {
    futures::stream::iter(claims)
        .map(|c| async move {
            let at = timestamp_now();
            let failed = Operation {
                state: OpState::Failed,
                error: Some(why.to_owned()),
                updated_at: at.clone(),
                finished_at: Some(at),
                ..c.record.clone()
            };
            let op_id = &failed.op_id;
            // Releasing removes the record the claim keeps: only once it is written apart.
            // Otherwise the claim is left to its lease, whose recovery writes the record.
            match starter.inventory.put_record(&failed, c.expires_at).await {
                Err(e) => tracing::error!(op_id = %op_id, error = %e, "operation record not written as failed; the claim is left to its lease"),
                Ok(()) => match starter.inventory.release_claim(&c.subcloud, &c.prior).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(op_id = %op_id, "claim was already gone when rolled back"),
                    Err(e) => tracing::error!(op_id = %op_id, error = %e, "claim not rolled back; its lease will expire"),
                },
            }
            let standing = starter.inventory.subcloud(&Ref::Id(c.subcloud.id)).await.ok();
            (reason(&c.subcloud, ReasonStatus::Failed, why.to_owned()), standing)
        })
        .buffer_unordered(starter.claim_concurrency)
        .collect()
        .await
}
