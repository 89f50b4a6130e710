//! The subcloud-backup routes (SPEC §2, §3): create, delete and restore. A request becomes a
//! typed command; each target subcloud's slot is claimed with one conditional write (a
//! group's members in parallel, bounded); each claim gets an operation record and a job on
//! the queue, and a claim whose record or job cannot be written is rolled back at once.

use super::{empty_response, json_response, ApiError, App, Fields, ReasonStatus, SubcloudReason};
use crate::auth::Principal;
use crate::domain::{
    digest_hex, epoch_now, timestamp_now, without_secrets, ClaimedState, OpId, OpKind, OpOptions,
    OpState, Operation, Ref, Release, SlotHolder, Subcloud,
};
use crate::jobs::JobMessage;
use crate::store::{ClaimOutcome, ClaimRequest, InventoryError, PriorState};
use crate::wire;
use base64::Engine;
use futures::StreamExt;
use http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;

/// `backup_values` / `restore_values` larger than this (as JSON) are refused, so ten jobs
/// always fit one SQS batch.
const VALUES_MAX_BYTES: usize = 16 * 1024;

/// dcmanager's reinstall modes (booleans): they need the subcloud's BMC, which dcbackup does
/// not drive. The stock client always sends them as "false", which asks for none of them.
const REINSTALL_FLAGS: [&str; 4] = ["with_install", "auto", "factory", "on_site"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Subcloud(Ref),
    Group(Ref),
}

/// A parsed subcloud-backup request.
#[derive(Debug, Clone)]
pub struct Command {
    pub kind: OpKind,
    pub target: Target,
    pub options: OpOptions,
    /// Delete: the release whose backups go.
    pub release: Option<Release>,
    /// Restore: `restore_values.bootstrap_address`, by subcloud name.
    pub bootstrap: HashMap<String, IpAddr>,
}

impl Command {
    /// The fields each kind takes; `release` comes from the delete route's path.
    pub fn parse(
        kind: OpKind,
        release: Option<Release>,
        mut f: Fields,
    ) -> Result<Command, ApiError> {
        let subcloud = f.target("subcloud", "Subcloud not found")?;
        let group = f.target("group", "Group not found")?;
        let local_only = f.boolean("local_only")?.unwrap_or(false);
        let registry_images = match kind {
            OpKind::Delete => false,
            _ => f.boolean("registry_images")?.unwrap_or(false),
        };
        let values_field = match kind {
            OpKind::Create => Some("backup_values"),
            OpKind::Restore => Some("restore_values"),
            OpKind::Delete => None,
        };
        let values = match values_field {
            Some(field) => f.mapping(field)?,
            None => None,
        };
        if let Some(password) = f.string("sysadmin_password")? {
            check_password(&password)?;
        }
        match kind {
            OpKind::Restore => {
                for field in REINSTALL_FLAGS {
                    if f.boolean(field)? == Some(true) {
                        return Err(ApiError::BadRequest(format!("{field} is not supported")));
                    }
                }
                // The release to reinstall (with with_install): empty asks for nothing.
                if f.string("release")?.is_some_and(|r| !r.trim().is_empty()) {
                    return Err(ApiError::BadRequest("release is not supported".into()));
                }
            }
            // The stock client repeats the path's release in the body.
            OpKind::Delete => {
                if let (Some(given), Some(path)) = (f.string("release")?, &release) {
                    if given != path.as_str() {
                        let path = path.as_str();
                        return Err(ApiError::BadRequest(format!(
                            "release {given} in the body differs from release {path} in the path; \
                             give the same release or leave it out of the body"
                        )));
                    }
                }
            }
            OpKind::Create => {}
        }
        f.finish()?;

        let target = match (subcloud, group) {
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "'subcloud' and 'group' parameters should not be given at the same time".into(),
                ))
            }
            (Some(s), None) => Target::Subcloud(s),
            (None, Some(g)) => Target::Group(g),
            (None, None) => {
                return Err(ApiError::BadRequest(
                    "'subcloud' or 'group' parameter is required".into(),
                ))
            }
        };
        if registry_images && !local_only {
            return Err(ApiError::BadRequest(
                "Option registry_images can not be used without local_only option.".into(),
            ));
        }
        let bootstrap = match &values {
            Some(v) if kind == OpKind::Restore => bootstrap_addresses(v)?,
            _ => HashMap::new(),
        };
        let values = values.map(without_secrets);
        if let (Some(v), Some(field)) = (&values, values_field) {
            if Value::Object(v.clone()).to_string().len() > VALUES_MAX_BYTES {
                return Err(ApiError::BadRequest(format!(
                    "{field} is too large; keep it under {VALUES_MAX_BYTES} bytes"
                )));
            }
        }
        Ok(Command {
            kind,
            target,
            options: OpOptions {
                local_only,
                registry_images,
                values,
            },
            release,
            bootstrap,
        })
    }

    /// The release an operation on `sc` is about: the path's for a delete, else the
    /// subcloud's own.
    pub fn release_for(&self, sc: &Subcloud) -> Release {
        match (&self.release, self.kind) {
            (Some(release), OpKind::Delete) => release.clone(),
            _ => sc.software_version.clone(),
        }
    }

    /// What identifies the request for `Idempotency-Key`: everything but the secret.
    pub fn fingerprint(&self) -> String {
        let target = match &self.target {
            Target::Subcloud(r) => json!({"subcloud": r.to_string()}),
            Target::Group(r) => json!({"group": r.to_string()}),
        };
        let mut bootstrap: Vec<(String, String)> = self
            .bootstrap
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        bootstrap.sort();
        let canonical = json!({
            "kind": self.kind,
            "target": target,
            "options": self.options,
            "release": self.release,
            "bootstrap": bootstrap,
        });
        digest_hex(&canonical.to_string())
    }
}

/// `sysadmin_password` is accepted for compatibility: base64 of UTF-8, checked and dropped.
fn check_password(encoded: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::BadRequest(
            "Failed to decode subcloud sysadmin_password, verify the password is base64 encoded"
                .into(),
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map(drop).map_err(|_| bad())
}

fn bootstrap_addresses(values: &Map<String, Value>) -> Result<HashMap<String, IpAddr>, ApiError> {
    let Some(given) = values.get("bootstrap_address") else {
        return Ok(HashMap::new());
    };
    let map = given.as_object().ok_or_else(|| {
        ApiError::BadRequest(
            "The bootstrap_address provided in restore_values is in invalid format.".into(),
        )
    })?;
    map.iter()
        .map(|(name, address)| {
            let ip = address
                .as_str()
                .and_then(|a| a.trim().parse::<IpAddr>().ok())
                .ok_or_else(|| {
                    let given = address
                        .as_str()
                        .map_or_else(|| address.to_string(), str::to_owned);
                    ApiError::BadRequest(format!(
                        "Subcloud {name} must have a valid bootstrap address: {given}"
                    ))
                })?;
            Ok((name.clone(), ip))
        })
        .collect()
}

/// One target subcloud's fate.
enum Verdict {
    Accepted {
        subcloud: Box<Subcloud>,
        prior: PriorState,
        op_id: OpId,
    },
    /// Not taken; the subcloud as it stands, unless it is gone.
    Refused(SubcloudReason, Option<Box<Subcloud>>),
}

/// A claimed subcloud on its way to the queue.
struct Claimed {
    subcloud: Subcloud,
    prior: PriorState,
    op_id: OpId,
}

fn reason(sc: &Subcloud, status: ReasonStatus, reason: String) -> SubcloudReason {
    SubcloudReason {
        id: sc.id,
        name: sc.name.to_string(),
        status,
        reason,
    }
}

/// Runs a command for a caller: claims, records, queues, answers.
pub async fn execute(
    app: &App,
    principal: &Principal,
    command: &Command,
) -> Result<Response<Body>, ApiError> {
    let (members, group) = match &command.target {
        Target::Subcloud(r) => (vec![app.inventory.subcloud(r).await?], None),
        Target::Group(r) => {
            let group = app.inventory.group(r).await.map_err(|e| match e {
                InventoryError::GroupNotFound(_) => ApiError::NotFound("Group not found".into()),
                other => other.into(),
            })?;
            let members = app.inventory.members(group.id).await?;
            if members.is_empty() {
                return Err(ApiError::BadRequest("No subclouds present in group".into()));
            }
            (members, Some(group))
        }
    };
    // Rolled-back claims are answered as they were read.
    let as_read: HashMap<u64, Subcloud> = members.iter().map(|sc| (sc.id, sc.clone())).collect();
    let now = epoch_now();
    let group_id = group.as_ref().map(|g| g.id);
    let verdicts: Vec<Verdict> = futures::stream::iter(members)
        .map(|sc| claim_one(app, command, sc, group_id, now))
        .buffer_unordered(app.claim_concurrency)
        .collect()
        .await;

    let mut claimed = Vec::new();
    let mut refused = Vec::new();
    let mut standing = Vec::new();
    for verdict in verdicts {
        match verdict {
            Verdict::Accepted {
                subcloud,
                prior,
                op_id,
            } => claimed.push(Claimed {
                subcloud: *subcloud,
                prior,
                op_id,
            }),
            Verdict::Refused(r, sc) => {
                refused.push(r);
                standing.extend(sc.map(|sc| *sc));
            }
        }
    }
    let group_name = group.map(|g| g.name.to_string());
    let (accepted, failed) =
        hand_over(app, principal, command, group_name.as_deref(), claimed).await;
    standing.extend(failed.iter().filter_map(|r| as_read.get(&r.id).cloned()));
    refused.extend(failed);
    refused.sort_by_key(|r| r.id);
    let accepted_any = !accepted.is_empty();
    standing.extend(accepted);
    standing.sort_by_key(|sc| sc.id);
    answer(
        command,
        group_name.as_deref(),
        accepted_any,
        standing,
        refused,
    )
}

async fn claim_one(
    app: &App,
    command: &Command,
    sc: Subcloud,
    group_id: Option<u64>,
    now: u64,
) -> Verdict {
    let request = ClaimRequest {
        op_id: OpId::new(),
        kind: command.kind,
        local_only: command.options.local_only,
        release: command.release_for(&sc),
        group_id,
        has_bootstrap_address: command.bootstrap.contains_key(sc.name.as_str()),
        now,
        lease_seconds: app.lease_seconds,
    };
    let refused = |status, why, standing: Option<Box<Subcloud>>| {
        Verdict::Refused(reason(&sc, status, why), standing)
    };
    match app.inventory.claim(sc.id, &request).await {
        Ok(ClaimOutcome::Claimed { subcloud, prior }) => Verdict::Accepted {
            subcloud,
            prior,
            op_id: request.op_id,
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
    let state = match holder.kind.claimed_state() {
        ClaimedState::Backup(_) => format!(
            "backup_status is '{}'",
            sc.backup_status.map_or("none", |b| b.as_str())
        ),
        ClaimedState::Deploy(_) => format!("deploy_status is '{}'", sc.deploy_status.as_str()),
    };
    format!(
        "Cannot perform {requested} operation: Subcloud {} current {state}. Please wait until \
         it finishes before running this operation.",
        sc.name
    )
}

/// Writes the operation records and sends the jobs of the claimed subclouds. A claim whose
/// record or job could not be written is rolled back and reported as failed.
async fn hand_over(
    app: &App,
    principal: &Principal,
    command: &Command,
    group: Option<&str>,
    claimed: Vec<Claimed>,
) -> (Vec<Subcloud>, Vec<SubcloudReason>) {
    if claimed.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let now = timestamp_now();
    let operations: Vec<Operation> = claimed
        .iter()
        .map(|c| Operation {
            op_id: c.op_id.clone(),
            kind: command.kind,
            subcloud_id: c.subcloud.id,
            subcloud_name: c.subcloud.name.to_string(),
            release: command.release_for(&c.subcloud),
            fence: c.subcloud.fence,
            options: command.options.clone(),
            requested_by: principal.subject.clone(),
            group: group.map(str::to_owned),
            state: OpState::Queued,
            error: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            started_at: None,
            finished_at: None,
        })
        .collect();

    let unrecorded = match app.inventory.put_operations(&operations).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "operation records could not be written");
            operations.iter().map(|op| op.op_id.clone()).collect()
        }
    };
    let (unrecorded, recorded): (Vec<_>, Vec<_>) = claimed
        .into_iter()
        .zip(operations)
        .partition(|(c, _)| unrecorded.contains(&c.op_id));
    let mut failed = undo(
        app,
        unrecorded,
        "the operation could not be recorded; try again",
    )
    .await;

    let jobs: Vec<JobMessage> = recorded
        .iter()
        .map(|(_, op)| JobMessage::for_operation(op))
        .collect();
    let sent = app.jobs.send_all(&jobs).await;
    let mut accepted = Vec::new();
    let mut unsent = Vec::new();
    for ((c, op), result) in recorded.into_iter().zip(sent) {
        match result {
            Ok(()) => {
                tracing::info!(op_id = %op.op_id, subcloud = %c.subcloud.name, kind = op.kind.as_str(), "operation queued");
                accepted.push(c.subcloud);
            }
            Err(why) => {
                tracing::error!(op_id = %op.op_id, subcloud = %c.subcloud.name, error = %why, "job not queued");
                unsent.push((c, op));
            }
        }
    }
    failed.extend(undo(app, unsent, "the job could not be queued; try again").await);
    accepted.sort_by_key(|sc| sc.id);
    (accepted, failed)
}

/// Undoes claims whose jobs will never run, all at once: each claim is released and its
/// record (if written) marked failed. If a release fails too, the lease expires and the
/// slot is recovered by the next claim.
async fn undo(app: &App, claims: Vec<(Claimed, Operation)>, why: &str) -> Vec<SubcloudReason> {
    futures::stream::iter(claims)
        .map(|(c, op)| async move {
            match app.inventory.release_claim(&c.subcloud, &c.prior).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(op_id = %op.op_id, "claim was already gone when rolled back"),
                Err(e) => tracing::error!(op_id = %op.op_id, error = %e, "claim not rolled back; its lease will expire"),
            }
            if let Err(e) = app.inventory.fail_operation(&op.op_id, why).await {
                tracing::error!(op_id = %op.op_id, error = %e, "operation record not marked failed");
            }
            reason(&c.subcloud, ReasonStatus::Failed, why.to_owned())
        })
        .buffer_unordered(app.claim_concurrency)
        .collect()
        .await
}

/// The answer, as dcmanager gives it: `subclouds` lists every subcloud of the target as it
/// stands after the request (SPEC §3); `skipped` and `failed` say why the others were not
/// taken. A request that took none is an error listing each one's reason.
fn answer(
    command: &Command,
    group: Option<&str>,
    accepted_any: bool,
    standing: Vec<Subcloud>,
    refused: Vec<SubcloudReason>,
) -> Result<Response<Body>, ApiError> {
    if !accepted_any {
        let count = |status: ReasonStatus| refused.iter().filter(|r| r.status == status).count();
        let (busy, failed) = (count(ReasonStatus::Busy), count(ReasonStatus::Failed));
        if let (Target::Subcloud(r), 1) = (&command.target, count(ReasonStatus::Gone)) {
            tracing::info!(subcloud = %r, "subcloud deleted while it was being claimed");
            return Err(ApiError::NotFound("Subcloud not found".into()));
        }
        // 409 when every subcloud was busy; 400 when any was not valid; else (only busy and
        // failed ones) the failure of a dependency: 503.
        let status = if busy == refused.len() {
            StatusCode::CONFLICT
        } else if busy + failed < refused.len() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let message = match group {
            None => refused
                .first()
                .map(|r| r.reason.clone())
                .unwrap_or_default(),
            Some(group) if status == StatusCode::CONFLICT => {
                format!("Every subcloud in group {group} has an operation in progress")
            }
            Some(group) if status == StatusCode::BAD_REQUEST => format!(
                "None of the subclouds in group {group} are in a valid state for {}",
                command.kind
            ),
            Some(group) => {
                format!("No subcloud in group {group} could be handed to a worker; try again")
            }
        };
        return Err(ApiError::Subclouds {
            status,
            message,
            subclouds: refused,
        });
    }
    let (failed, skipped): (Vec<_>, Vec<_>) = refused
        .into_iter()
        .partition(|r| r.status == ReasonStatus::Failed);
    let body = json!({
        "subclouds": standing.iter().map(wire::subcloud).collect::<Vec<_>>(),
        "skipped": skipped,
        "failed": failed,
    });
    match command.kind {
        OpKind::Delete if skipped.is_empty() && failed.is_empty() => {
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        OpKind::Delete => Ok(json_response(StatusCode::MULTI_STATUS, &body)),
        _ => Ok(json_response(StatusCode::OK, &body)),
    }
}
