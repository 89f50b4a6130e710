//! The operation slot (SPEC §3): the one conditional write that claims a subcloud for an
//! operation and keeps its record on the subcloud's item, the conditional write that gives
//! it back, and the recovery of a slot whose lease expired. Whether the subcloud is free
//! *and* valid for the operation is decided inside the claim's condition; the item as it was
//! comes back either way (ReturnValues and ReturnValuesOnConditionCheckFailure = ALL_OLD):
//! on success it gives the fence and the state the claim replaced, on failure it says why,
//! so a claim needs no read before or after it. `explain` mirrors each validity condition in
//! Rust for that purpose only.

use super::attributes::{
    AGENT_URL, AVAILABILITY_STATUS, BACKUP_STATUS, CENTRAL_BACKUPS, DEPLOY_STATUS,
    ERROR_DESCRIPTION, FENCE, GROUP_ID, ID, LEASE_EXPIRES_AT, LEASE_HELD, LOCAL_BACKUPS,
    MANAGEMENT_STATE, NAME, OP_BYTES, OP_ID, OP_KEY, OP_KIND, OP_OPTIONS, OP_PRIOR, OP_REQUEST,
    OP_SINCE, ORPHAN_UPLOAD, POLL_SEQ, POLL_TOKEN, SEAT, SOFTWARE_VERSION, UPDATED_AT,
};
use super::{from_item, n, s, to_value, Expr, StoreError};
use crate::domain::{
    timestamp_after, timestamp_now, AvailabilityStatus, BackupStatus, ClaimedState, DeployStatus,
    ManagementState, Name, OpId, OpKind, OpOptions, OpRequest, OpState, Release, SlotHolder,
    SlotState, Subcloud, NO_ERRORS,
};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

/// What a claim asks for: the subcloud, the operation, and what the claim keeps of its
/// request for the operation's record (`Operation::queued`).
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub subcloud_id: u64,
    /// The subcloud's name, when the request named it: the claim's condition checks it, so
    /// an id from the instance's name cache is safe (a stale one finds the subcloud gone).
    pub name: Option<Name>,
    /// Made by `OpId::for_subcloud(subcloud_id)`: the record is found through it while the
    /// claim keeps it.
    pub op_id: OpId,
    pub kind: OpKind,
    /// Holds `local_only`, which decides validity for a delete and a restore.
    pub options: OpOptions,
    /// The release the request named (a delete's); otherwise the operation is about the
    /// subcloud's software-version (a restore: the one it must have a backup of).
    pub release: Option<Release>,
    /// For a group request: the group the subcloud must still be in (the member list comes
    /// from an eventually consistent index).
    pub group_id: Option<u64>,
    /// Restore: whether an address was given for this subcloud in `restore_values`; if not,
    /// its registered agent address must exist.
    pub has_bootstrap_address: bool,
    /// Unix seconds the claim is made at, and how long its lease lasts.
    pub now: u64,
    pub lease_seconds: u64,
    /// The request's scoped `Idempotency-Key` (a digest), if it has one. It is recorded on
    /// the slot; a slot held under the same key by an operation no worker started is taken
    /// over: it was claimed by an earlier attempt of this request, which is dead, because
    /// this one holds the key now (held for the function's timeout and more).
    pub key: Option<String>,
    /// The caller's `sub`, or `schedule:<name>`.
    pub requested_by: String,
    /// The group targeted, and the schedule that fired the request, if any.
    pub group: Option<String>,
    pub schedule_id: Option<u64>,
}

impl ClaimRequest {
    /// A claim of subcloud `subcloud_id` for `kind` at `now` (Unix seconds), under a new
    /// operation id, with nothing else asked: the fields are public for the rest.
    pub fn new(subcloud_id: u64, kind: OpKind, now: u64, lease_seconds: u64) -> ClaimRequest {
        ClaimRequest {
            subcloud_id,
            name: None,
            op_id: OpId::for_subcloud(subcloud_id),
            kind,
            options: OpOptions::default(),
            release: None,
            group_id: None,
            has_bootstrap_address: false,
            now,
            lease_seconds,
            key: None,
            requested_by: String::new(),
            group: None,
            schedule_id: None,
        }
    }
}

#[derive(Debug)]
pub enum ClaimOutcome {
    /// The slot is ours; the subcloud as the claim left it (its operation's record is
    /// `Operation::queued` of it), and the state it replaced (so a claim whose job cannot be
    /// queued can be undone exactly).
    Claimed {
        subcloud: Box<Subcloud>,
        prior: SlotState,
    },
    /// Another operation holds the slot; the subcloud as it stands.
    Busy {
        subcloud: Box<Subcloud>,
        holder: SlotHolder,
    },
    /// The subcloud (as it stands) is not valid for the operation (dcmanager's reason).
    Invalid {
        subcloud: Box<Subcloud>,
        reason: String,
    },
    /// The subcloud was deleted meanwhile (or, claimed by name, is not at that id).
    Gone,
    /// The subcloud kept changing under the claim (another writer won each attempt) and is
    /// free and valid as it stands.
    Contended { name: Name },
}

/// Adds to `e` the condition that the slot is free: no operation id is recorded. An expired
/// lease is not free until it has been recovered (`recover_expired`), so no state an
/// operation left behind survives.
pub(crate) fn slot_free(e: &mut Expr) -> &mut Expr {
    e.not_exists(OP_ID)
}

/// Every attribute of a held slot. `lease_held` exists only while the slot is held, so the
/// expiring-leases index holds exactly the held slots (the sweeper's view, no scan).
pub const SLOT_ATTRIBUTES: [&str; 13] = [
    OP_ID,
    OP_KIND,
    OP_SINCE,
    LEASE_EXPIRES_AT,
    LEASE_HELD,
    SEAT,
    POLL_SEQ,
    POLL_TOKEN,
    OP_KEY,
    OP_BYTES,
    OP_OPTIONS,
    OP_REQUEST,
    OP_PRIOR,
];
/// The value of `lease_held` while a lease is held.
pub const HELD: &str = "held";

/// Adds to `e` the removal of every attribute of a held slot: the slot is free.
pub(crate) fn free_slot(e: &mut Expr) -> &mut Expr {
    for attr in SLOT_ATTRIBUTES {
        e.remove(attr);
    }
    e
}

/// How many times a claim tries: after recovering an expired lease, after finding the
/// subcloud written at a time not before the claim's (a writer whose clock is ahead), after
/// a concurrent transaction (with a random backoff: about 0.4 s in all at most, far inside
/// the function's timeout).
const CLAIM_ATTEMPTS: usize = 8;

enum Attempt {
    Done(ClaimOutcome),
    /// The slot is held by an operation whose lease has expired.
    Expired(Box<Subcloud>),
    /// The slot is held under this request's own key by an operation no worker started.
    Abandoned(Box<Subcloud>),
    /// The subcloud is free and valid but was last written at a time not before the
    /// claim's (by a writer whose clock is ahead of ours).
    Changed(Box<Subcloud>),
    /// A concurrent transaction on the same item cancelled ours.
    Conflict,
}

/// Why a claim at time `since` failed, from the item as it stands.
fn judge(req: &ClaimRequest, old: Subcloud, since: &str) -> Attempt {
    if req.name.as_ref().is_some_and(|name| *name != old.name) {
        return Attempt::Done(ClaimOutcome::Gone);
    }
    // This very claim, landed by an earlier try whose answer was lost (the SDK sends a write
    // again after a timeout or a 5xx): op ids are never reused.
    if old.op_id.as_ref() == Some(&req.op_id) {
        return Attempt::Done(ClaimOutcome::Claimed {
            prior: kept_prior(&req.kind.claimed_state(), &old),
            subcloud: Box::new(old),
        });
    }
    let never_started = old.op_since.as_ref() == Some(&old.updated_at)
        && old.seat.is_none()
        && old.poll_seq.is_none();
    if req.key.is_some() && old.op_key == req.key && never_started {
        return Attempt::Abandoned(Box::new(old));
    }
    if let Some(holder) = old.slot_holder(req.now) {
        return Attempt::Done(ClaimOutcome::Busy {
            subcloud: Box::new(old),
            holder,
        });
    }
    if old.op_id.is_some() {
        return Attempt::Expired(Box::new(old));
    }
    if let Some(reason) = explain(req, &old) {
        return Attempt::Done(ClaimOutcome::Invalid {
            subcloud: Box::new(old),
            reason,
        });
    }
    // Valid and free: what failed was the order of times.
    if old.updated_at.as_str() >= since {
        Attempt::Changed(Box::new(old))
    } else {
        Attempt::Done(ClaimOutcome::Contended { name: old.name })
    }
}

/// The state a claim replaced, as it kept it on `sc` (`op_prior`). One it cannot read is
/// taken for the claimed state, which a rollback then settles as its failure state.
fn kept_prior(claimed: &ClaimedState, sc: &Subcloud) -> SlotState {
    let read = match (claimed, sc.op_prior.as_deref()) {
        (ClaimedState::Backup(_), Some("")) => Some(SlotState::Backup(None)),
        (ClaimedState::Backup(_), Some(kept)) => serde_json::from_value(kept.into())
            .ok()
            .map(|b| SlotState::Backup(Some(b))),
        (ClaimedState::Deploy(_), Some(kept)) if !kept.is_empty() => {
            serde_json::from_value(kept.into())
                .ok()
                .map(SlotState::Deploy)
        }
        _ => None,
    };
    read.unwrap_or_else(|| claimed.clone().into())
}

/// Adds to `e` the condition under which a subcloud may be claimed: it exists, its slot is
/// free, and it is valid for the operation (SPEC §1).
fn claim_condition<'e>(e: &'e mut Expr, req: &ClaimRequest, since: &str) -> &'e mut Expr {
    e.exists(ID);
    if let Some(name) = &req.name {
        e.eq(NAME, s(name.as_str()));
    }
    slot_free(e);
    // Every write records `updated_at`; a claim that comes after them says so in its times
    // too (SPEC §3: the write establishes the order).
    e.absent_or(UPDATED_AT, |e| e.compared(UPDATED_AT, "<", s(since)));
    if let Some(group) = req.group_id {
        e.eq(GROUP_ID, n(group));
    }
    let managed_online = |e: &mut Expr| {
        e.eq(MANAGEMENT_STATE, s(ManagementState::Managed.as_str()))
            .eq(AVAILABILITY_STATUS, s(AvailabilityStatus::Online.as_str()));
    };
    match req.kind {
        OpKind::Create => {
            managed_online(e);
            e.eq(DEPLOY_STATUS, s(DeployStatus::COMPLETE));
        }
        OpKind::Delete if req.options.local_only => managed_online(e),
        OpKind::Delete => {}
        OpKind::Restore => {
            e.eq(MANAGEMENT_STATE, s(ManagementState::Unmanaged.as_str()));
            not_in(e, DEPLOY_STATUS, DeployStatus::forbidding_restore());
            let backups = if req.options.local_only {
                LOCAL_BACKUPS
            } else {
                CENTRAL_BACKUPS
            };
            // A backup of the release the subcloud is at, whatever that is: the claim needs
            // no read to know it.
            e.when(|e| {
                format!(
                    "contains({}, {})",
                    e.name(backups),
                    e.name(SOFTWARE_VERSION)
                )
            });
            if !req.has_bootstrap_address {
                e.exists(AGENT_URL);
            }
        }
    }
    e
}

/// Adds to `e` the condition that `attr` is none of `states`.
pub(crate) fn not_in<'a, 'e>(
    e: &'e mut Expr,
    attr: &str,
    states: impl Iterator<Item = &'a str>,
) -> &'e mut Expr {
    e.when(|e| {
        let values: Vec<String> = states.map(|state| e.value(s(state))).collect();
        format!("NOT {} IN ({})", e.name(attr), values.join(", "))
    })
}

/// Why `sc` is not valid for the claim, in dcmanager's words; `None` if it is. The Rust
/// twin of the validity part of `ClaimCondition`, used only to explain a failed claim.
fn explain(req: &ClaimRequest, sc: &Subcloud) -> Option<String> {
    if req.group_id.is_some_and(|g| g != sc.group_id) {
        return Some(format!("Subcloud {} is no longer in the group.", sc.name));
    }
    let managed_online = sc.management_state == ManagementState::Managed
        && sc.availability_status == AvailabilityStatus::Online;
    match req.kind {
        OpKind::Create => (!managed_online || sc.deploy_status.as_str() != DeployStatus::COMPLETE)
            .then(|| {
                format!(
                    "Subcloud {} must be deployed, online and managed for the subcloud-backup create operation.",
                    sc.name
                )
            }),
        OpKind::Delete => (req.options.local_only && !managed_online).then(|| {
            format!(
                "Subcloud {} must be online and managed for the subcloud-backup delete operation with --local-only option.",
                sc.name
            )
        }),
        OpKind::Restore => {
            let local_only = req.options.local_only;
            let backups = if local_only { &sc.local_backups } else { &sc.central_backups };
            if sc.management_state != ManagementState::Unmanaged || sc.deploy_status.forbids_restore() {
                Some(format!(
                    "Subcloud {} must be unmanaged and in a valid deploy state for the subcloud-backup restore operation.",
                    sc.name
                ))
            } else if !backups.contains(sc.software_version.as_str()) {
                let location = if local_only { "local" } else { "central" };
                Some(format!(
                    "Subcloud {}: no {location} backup found for release {}.",
                    sc.name,
                    sc.software_version.as_str()
                ))
            } else if !req.has_bootstrap_address && sc.agent_url.is_none() {
                Some(format!(
                    "Unable to obtain the subcloud {} bootstrap_address from either restore or install values. Please ensure bootstrap_address is specified in the restore-values.yml and try again.",
                    sc.name
                ))
            } else {
                None
            }
        }
    }
}

impl super::Store {
    /// Claims the slot of subcloud `req.subcloud_id` for an operation, in one conditional
    /// write on its item that also keeps the operation's record there (SPEC §3: a claim never
    /// exists without its record). The record moves to the operations table when a worker
    /// starts the operation, or when whoever ends it first does (`keep_record`); until then
    /// `operation` finds it on the item. The claim also resets `error-description` to "No
    /// errors present" (SPEC §1). A slot held under an expired lease is first recovered, then
    /// claimed. The claim's time (`op_since`) is after every earlier write to the subcloud,
    /// the end of the previous operation included, even when that writer's clock was ahead.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let mut since = timestamp_now();
        for attempt in 0..CLAIM_ATTEMPTS {
            match self.try_claim(req, &since).await? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Expired(old) => {
                    match self.recover_expired(&old, req.now).await {
                        // Recovered, by this call or by a racing claim: the next attempt's
                        // failure says how the item stands now.
                        Ok(_) => {}
                        Err(StoreError::Conflict(_)) => super::conflict_backoff(attempt).await,
                        Err(e) => return Err(e),
                    }
                    since = timestamp_now();
                }
                Attempt::Abandoned(old) => {
                    let why = format!(
                        "{} operation {} was not queued: the request that claimed it ended \
                         first; a retry of that request took the subcloud over",
                        req.kind,
                        old.op_id.as_ref().map_or("", |op| op.as_str())
                    );
                    match self.fail_held(&old, &why, FailWhen::NeverStarted).await {
                        Ok(_) => {}
                        Err(StoreError::Conflict(_)) => super::conflict_backoff(attempt).await,
                        Err(e) => return Err(e),
                    }
                    since = timestamp_now();
                }
                Attempt::Changed(old) => since = timestamp_after(&old.updated_at),
                // A transaction on the same item at the same moment: let it land.
                Attempt::Conflict => super::conflict_backoff(attempt).await,
            }
        }
        // Every attempt lost a race: as the item stands now, which is most often held by
        // the winner (busy, in dcmanager's words).
        let now: Option<Subcloud> = self
            .get(&self.res.subclouds_table, "subcloud", req.subcloud_id)
            .await?;
        let Some(now) = now else {
            return Ok(ClaimOutcome::Gone);
        };
        let name = now.name.clone();
        Ok(match judge(req, now, &since) {
            Attempt::Done(outcome) => outcome,
            _ => ClaimOutcome::Contended { name },
        })
    }

    async fn try_claim(&self, req: &ClaimRequest, since: &str) -> Result<Attempt, StoreError> {
        let lease = req.now + req.lease_seconds;
        let claimed = req.kind.claimed_state();
        let request = OpRequest {
            requested_by: req.requested_by.clone(),
            group: req.group.clone(),
            schedule_id: req.schedule_id,
            release: req.release.clone(),
            // The table's TTL deletes the record once the operation history period has passed.
            expires_at: req.now.saturating_add(self.operation_history.as_secs()),
        };
        let mut e = Expr::new();
        claim_condition(&mut e, req, since);
        e.set(OP_ID, s(req.op_id.as_str()))
            .set(OP_KIND, s(req.kind.as_str()))
            .set(OP_SINCE, s(since))
            .set(LEASE_EXPIRES_AT, n(lease))
            .set(LEASE_HELD, s(HELD))
            .count(FENCE, 0, 1)
            .set(UPDATED_AT, s(since))
            .set(ERROR_DESCRIPTION, s(NO_ERRORS))
            .copy_or(OP_PRIOR, claimed.attribute(), s(""))
            .set(claimed.attribute(), s(claimed.as_str()))
            .set_opt(OP_KEY, req.key.as_deref().map(s))
            .set(OP_OPTIONS, to_value("options", &req.options)?)
            .set(OP_REQUEST, to_value("request", &request)?);
        let result = e
            .update_item(
                self.ddb
                    .update_item()
                    .table_name(&self.res.subclouds_table)
                    .key(ID, n(req.subcloud_id)),
            )
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let old: Subcloud = from_item("subcloud", out.attributes.unwrap_or_default())?;
                let prior = claimed.current(&old);
                let mut sc = old;
                sc.op_id = Some(req.op_id.clone());
                sc.op_kind = Some(req.kind);
                sc.op_since = Some(since.to_owned());
                sc.lease_expires_at = Some(lease);
                sc.fence += 1;
                sc.updated_at = since.to_owned();
                sc.error_description = NO_ERRORS.to_owned();
                sc.op_key = req.key.clone();
                sc.op_options = Some(req.options.clone());
                sc.op_request = Some(request);
                sc.op_prior = Some(prior.as_str().unwrap_or_default().to_owned());
                claimed.set(&mut sc);
                Ok(Attempt::Done(ClaimOutcome::Claimed {
                    subcloud: Box::new(sc),
                    prior,
                }))
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item().filter(|item| !item.is_empty()) {
                        None => Ok(Attempt::Done(ClaimOutcome::Gone)),
                        Some(old) => Ok(judge(req, from_item("subcloud", old.clone())?, since)),
                    }
                }
                Some(UpdateItemError::TransactionConflictException(_)) => Ok(Attempt::Conflict),
                _ => Err(StoreError::from_sdk("UpdateItem claim", e)),
            },
        }
    }

    /// Gives a claimed slot back, restoring the state the claim replaced. Conditional on the
    /// operation still holding it with the same fence: a claim that was lost changes nothing.
    /// Returns whether the slot was released.
    pub async fn release_claim(
        &self,
        claimed: &Subcloud,
        prior: &SlotState,
    ) -> Result<bool, StoreError> {
        let (Some(op_id), Some(kind), fence) = (&claimed.op_id, claimed.op_kind, claimed.fence)
        else {
            return Ok(false);
        };
        let claimed_state = kind.claimed_state();
        let mut e = Expr::new();
        // Only a claim no worker has started on: no seat taken, the claimed state as set.
        e.eq(OP_ID, s(op_id.as_str()))
            .eq(FENCE, n(fence))
            .not_exists(SEAT)
            .eq(claimed_state.attribute(), s(claimed_state.as_str()));
        // A claim only replaces final states (a free slot never leaves an in-progress one
        // behind); should one be found anyway, it is put back as its failure state.
        let prior = prior.settled();
        match prior.as_str() {
            Some(state) => e.set(prior.attribute(), s(state)),
            None => e.remove(prior.attribute()),
        };
        e.set(UPDATED_AT, s(timestamp_now()));
        free_slot(&mut e);
        let result = e
            .update_item(
                self.ddb
                    .update_item()
                    .table_name(&self.res.subclouds_table)
                    .key(ID, n(claimed.id)),
            )
            .send()
            .await;
        super::conditional(result, "UpdateItem release")
    }

    /// Frees a slot whose lease expired (its worker died or its job was lost): the
    /// in-progress state it left falls to its failure state, `error-description` says why,
    /// and its operation record is marked failed. Conditional on the same operation, fence
    /// and states still being there under an expired lease, so nothing live is touched.
    /// Returns whether this call recovered it.
    pub async fn recover_expired(&self, sc: &Subcloud, now: u64) -> Result<bool, StoreError> {
        let (Some(op_id), Some(kind), Some(lease)) = (&sc.op_id, sc.op_kind, sc.lease_expires_at)
        else {
            return Ok(false);
        };
        if lease > now {
            return Ok(false);
        }
        let why = format!(
            "{kind} operation {op_id} did not finish: its lease expired at {}",
            crate::domain::timestamp_of_epoch(lease)
        );
        self.fail_held(sc, &why, FailWhen::LeaseExpiredBy(now))
            .await
    }

    /// The held slots whose lease expired by `now`, from the sparse expiring-leases index.
    pub async fn expired_leases(&self, now: u64) -> Result<Vec<Subcloud>, StoreError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.res.subclouds_table)
            .index_name(crate::resources::EXPIRING_LEASES_INDEX);
        let query = Expr::new()
            .eq(LEASE_HELD, s(HELD))
            .le(LEASE_EXPIRES_AT, n(now))
            .query(query);
        self.query_all("subcloud", "Query expiring-leases", query)
            .await
    }

    /// Ends the operation holding `sc`'s slot as failed, when `when` holds inside the same
    /// conditional write (besides the same operation, fence and states as `sc`).
    pub async fn fail_held(
        &self,
        sc: &Subcloud,
        why: &str,
        when: FailWhen,
    ) -> Result<bool, StoreError> {
        let Some(op_id) = &sc.op_id else {
            return Ok(false);
        };
        // Its record may still be on the item, which the end frees: moved out first.
        self.keep_record(sc).await?;
        let at = timestamp_now();
        let mut e = Expr::new();
        e.eq(OP_ID, s(op_id.as_str()))
            .eq(FENCE, n(sc.fence))
            .eq(DEPLOY_STATUS, s(sc.deploy_status.as_str()))
            .eq_or_absent(BACKUP_STATUS, sc.backup_status.map(|b| s(b.as_str())))
            .set(ERROR_DESCRIPTION, s(why))
            .set(UPDATED_AT, s(&at));
        match when {
            FailWhen::LeaseExpiredBy(now) => {
                e.le(LEASE_EXPIRES_AT, n(now));
                // Its agent may have uploaded something meanwhile: whoever comes next (the
                // sweeper, or the next worker on the subcloud after a claim recovered it)
                // discards it.
                if sc.op_kind == Some(OpKind::Create) {
                    e.set(ORPHAN_UPLOAD, s(op_id.as_str()));
                }
            }
            // No worker wrote since the claim (every worker step does), took a seat or handed
            // a poll on: nothing ran on the agent.
            FailWhen::NeverStarted => {
                e.when(|e| format!("{} = {}", e.name(UPDATED_AT), e.name(OP_SINCE)))
                    .not_exists(SEAT)
                    .not_exists(POLL_SEQ);
            }
        }
        if let Some(failed) = sc.deploy_status.failure_state() {
            e.set(DEPLOY_STATUS, s(failed.as_str()));
        }
        if let Some(failed) = sc.backup_status.and_then(BackupStatus::failure_state) {
            e.set(BACKUP_STATUS, s(failed.as_str()));
        }
        free_slot(&mut e);
        let ended = self
            .end_operation((sc.id, e), op_id, OpState::Failed, Some(why), sc.seat, &at)
            .await?;
        if ended {
            tracing::warn!(op_id = %op_id, subcloud = %sc.name, why, "operation ended as failed");
        }
        Ok(ended)
    }
}

/// When `fail_held` may end an operation whatever its worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailWhen {
    /// Its lease expired by this time (Unix seconds): no worker extends it any more.
    LeaseExpiredBy(u64),
    /// No worker ever started its job: nothing written since the claim, no seat taken, no
    /// poll handed on.
    NeverStarted,
}

impl super::Store {
    /// Forgets the orphaned upload of `op_id` once it is discarded (unless another took its
    /// place meanwhile).
    pub async fn clear_orphan_upload(
        &self,
        subcloud_id: u64,
        op_id: &OpId,
    ) -> Result<(), StoreError> {
        let update = self
            .ddb
            .update_item()
            .table_name(&self.res.subclouds_table)
            .key(ID, n(subcloud_id));
        let result = Expr::new()
            .eq(ORPHAN_UPLOAD, s(op_id.as_str()))
            .remove(ORPHAN_UPLOAD)
            .update_item(update)
            .send()
            .await;
        super::conditional(result, "UpdateItem orphan upload").map(drop)
    }
}
