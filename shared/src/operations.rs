//! The one way to start operations (SPEC §3, §5): each target subcloud's slot is claimed
//! together with its operation record in one transaction (a group's members up to ten to a
//! transaction, several transactions at once, bounded); each batch of claims then gets its
//! jobs on the queue, and a claim whose job cannot be sent is rolled back at once. The API handlers and the scheduler both call `start`; nothing else
//! claims a slot.

use crate::api::{Command, ReasonStatus, SubcloudReason, Target};
use crate::domain::{
    epoch_now, BackupStatus, Group, OpId, OpKind, Operation, SlotHolder, SlotState, Subcloud,
};
use crate::jobs::{JobMessage, JobQueue};
use crate::store::{
    ClaimOutcome, ClaimRequest, InventoryError, Store, StoreError, MAX_CLAIMS_PER_TRANSACTION,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::net::IpAddr;

/// What `start` needs: the store, the jobs queue and two settings.
#[derive(Debug, Clone, Copy)]
pub struct Starter<'a> {
    pub inventory: &'a Store,
    pub jobs: &'a JobQueue,
    /// How long a claimed slot is held before it may be recovered.
    pub lease_seconds: u64,
    /// About how many members of a group are claimed at once (rounded up to whole
    /// transactions of `MAX_CLAIMS_PER_TRANSACTION`).
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
    /// answer); a member deleted meanwhile is left out.
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
        /// The operation record the claim wrote with it.
        record: Box<Operation>,
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
                record,
                bootstrap_address,
            } => claimed.push(Claimed {
                subcloud: *subcloud,
                prior,
                record: *record,
                bootstrap_address,
            }),
            Verdict::Refused(r, sc) => {
                refused.push(r);
                standing.extend(sc.map(|sc| *sc));
            }
        }
    }
    let (accepted, failed) = hand_over(starter, claimed).await;
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
    record: Operation,
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
    let (members, group) = match &command.target {
        Target::Subcloud(r) => (vec![starter.inventory.subcloud(r).await?], None),
        Target::Group(r) => {
            let group = starter.inventory.group(r).await?;
            let members = starter.inventory.members(group.id).await?;
            if members.is_empty() {
                return Err(StartError::EmptyGroup(group.name.to_string()));
            }
            (members, Some(group))
        }
    };
    // Rolled-back claims are answered as they were read.
    let as_read: HashMap<u64, Subcloud> = members.iter().map(|sc| (sc.id, sc.clone())).collect();
    let now = epoch_now();
    let group_id = group.as_ref().map(|g| g.id);
    let group_name = group.as_ref().map(|g| g.name.to_string());
    // Members are claimed ten to a transaction (fewer when their records are large), and
    // each batch's jobs go out as soon as its claims complete, so the queue's calls overlap
    // the claims instead of following them all. About `claim_concurrency` members at once.
    let per_transaction = claims_per_transaction(command);
    let in_flight = starter.claim_concurrency.div_ceil(per_transaction).max(1);
    let batches: Vec<Handed> = futures::stream::iter(members)
        .chunks(per_transaction)
        .map(|batch| {
            let claims: Vec<(Subcloud, ClaimRequest, Operation)> = batch
                .into_iter()
                .map(|sc| {
                    let (request, record) = prepare(
                        starter,
                        command,
                        origin,
                        &sc,
                        group_name.as_deref(),
                        group_id,
                        now,
                    );
                    (sc, request, record)
                })
                .collect();
            async move {
                let outcomes = starter.inventory.claim_together(&claims).await;
                let verdicts = claims
                    .into_iter()
                    .zip(outcomes)
                    .map(|((sc, _, record), outcome)| verdict(command, sc, record, outcome))
                    .collect();
                hand_over_batch(starter, verdicts).await
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
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
    standing.extend(failed.iter().filter_map(|r| as_read.get(&r.id).cloned()));
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

/// The claims one transaction takes: `MAX_CLAIMS_PER_TRANSACTION`, fewer when large values
/// would take the records past DynamoDB's 4 MB a transaction.
fn claims_per_transaction(command: &Command) -> usize {
    const TRANSACTION_BUDGET: usize = 3 * 1024 * 1024;
    // A record's own attributes, and the subcloud update beside it.
    const PER_CLAIM: usize = 8 * 1024;
    let options = serde_json::to_vec(&command.options).map_or(0, |v| v.len());
    (TRANSACTION_BUDGET / (options + PER_CLAIM)).clamp(1, MAX_CLAIMS_PER_TRANSACTION)
}

/// The claim of one target subcloud and the operation record it writes (the claim sets the
/// record's fence, state and times).
fn prepare(
    starter: Starter<'_>,
    command: &Command,
    origin: &Origin,
    sc: &Subcloud,
    group: Option<&str>,
    group_id: Option<u64>,
    now: u64,
) -> (ClaimRequest, Operation) {
    let request = ClaimRequest {
        op_id: OpId::new(),
        kind: command.kind,
        local_only: command.options.local_only,
        release: command.release_for(sc),
        group_id,
        has_bootstrap_address: command.bootstrap.contains_key(sc.name.as_str()),
        now,
        lease_seconds: starter.lease_seconds,
        key: origin.key.clone(),
    };
    let record = Operation {
        group: group.map(str::to_owned),
        schedule_id: origin.schedule_id,
        ..request.record(sc, command.options.clone(), origin.requested_by.clone())
    };
    (request, record)
}

/// One target subcloud's fate, from its claim's outcome.
fn verdict(
    command: &Command,
    sc: Subcloud,
    record: Operation,
    outcome: Result<ClaimOutcome, StoreError>,
) -> Verdict {
    let refused = |status, why, standing: Option<Box<Subcloud>>| {
        Verdict::Refused(reason(&sc, status, why), standing)
    };
    match outcome {
        Ok(ClaimOutcome::Claimed { subcloud, prior }) => Verdict::Accepted {
            bootstrap_address: command.bootstrap.get(sc.name.as_str()).copied(),
            record: Box::new(Operation {
                fence: subcloud.fence,
                created_at: subcloud.op_since.clone().unwrap_or_default(),
                updated_at: subcloud.op_since.clone().unwrap_or_default(),
                ..record
            }),
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
            Some(Box::new(sc.clone())),
        ),
        Ok(ClaimOutcome::Invalid {
            subcloud,
            reason: why,
        }) => refused(ReasonStatus::Invalid, why, Some(subcloud)),
        Ok(ClaimOutcome::Gone) => refused(
            ReasonStatus::Gone,
            format!("Subcloud {} no longer exists", sc.name),
            None,
        ),
        Err(e) => {
            tracing::error!(error = %e, subcloud = %sc.name, "claim failed");
            refused(
                ReasonStatus::Failed,
                "the database is unavailable; try again".into(),
                Some(Box::new(sc.clone())),
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
/// sent is rolled back and reported as failed.
async fn hand_over(
    starter: Starter<'_>,
    claimed: Vec<Claimed>,
) -> (Vec<Subcloud>, Vec<SubcloudReason>) {
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

/// Undoes claims whose jobs will never run, all at once: each claim is released and its
/// record marked failed. If a release fails too, the lease expires and the slot is
/// recovered by the next claim (or the sweeper), which fails the record then.
async fn undo(starter: Starter<'_>, claims: Vec<Claimed>, why: &str) -> Vec<SubcloudReason> {
    futures::stream::iter(claims)
        .map(|c| async move {
            let op = &c.record;
            match starter.inventory.release_claim(&c.subcloud, &c.prior).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(op_id = %op.op_id, "claim was already gone when rolled back"),
                Err(e) => tracing::error!(op_id = %op.op_id, error = %e, "claim not rolled back; its lease will expire"),
            }
            if let Err(e) = starter.inventory.fail_operation(&op.op_id, why).await {
                tracing::error!(op_id = %op.op_id, error = %e, "operation record not marked failed");
            }
            reason(&c.subcloud, ReasonStatus::Failed, why.to_owned())
        })
        .buffer_unordered(starter.claim_concurrency)
        .collect()
        .await
}
