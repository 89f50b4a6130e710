//! The subcloud-backup routes (SPEC §2, §3): create, delete and restore. A request becomes a
//! typed command; each target subcloud's slot is claimed with one conditional write (a
//! group's members in parallel, bounded); each claim gets an operation record and a job on
//! the queue, and a claim whose record or job cannot be written is rolled back at once.

use super::{empty_response, json_response, ApiError, App, Fields, ReasonStatus, SubcloudReason};
use crate::auth::Principal;
use crate::domain::{
    check_values_fit, digest_hex, epoch_now, timestamp_now, without_secrets, Invalid, OpId, OpKind,
    OpOptions, OpState, Operation, Ref, Release, Subcloud,
};
use crate::jobs::JobMessage;
use crate::store::{ClaimOutcome, ClaimRequest, PriorState};
use crate::wire;
use base64::Engine;
use futures::StreamExt;
use http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;

/// dcmanager's reinstall modes: they need the subcloud's BMC, which dcbackup does not drive.
const UNSUPPORTED_RESTORE_FIELDS: [&str; 5] =
    ["with_install", "release", "auto", "factory", "on_site"];

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
        let subcloud = f.target("subcloud", "Subcloud")?;
        let group = f.target("group", "Subcloud group")?;
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
        if kind == OpKind::Restore {
            for field in UNSUPPORTED_RESTORE_FIELDS {
                if f.present(field) {
                    return Err(ApiError::BadRequest(format!("{field} is not supported")));
                }
            }
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
                "Option registry_images cannot be used without local_only option.".into(),
            ));
        }
        let bootstrap = match &values {
            Some(v) if kind == OpKind::Restore => bootstrap_addresses(v)?,
            _ => HashMap::new(),
        };
        let values = values.map(without_secrets);
        if let (Some(v), Some(field)) = (&values, values_field) {
            check_values_fit(field, v)?;
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
            let field = format!("restore_values.bootstrap_address.{name}");
            let ip = address
                .as_str()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .ok_or_else(|| Invalid::field(&field, "must be an IPv4 or IPv6 address"))?;
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
    Refused(SubcloudReason),
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
            let group = app.inventory.group(r).await?;
            let members = app.inventory.members(group.id).await?;
            if members.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "Group {} has no subclouds",
                    group.name
                )));
            }
            (members, Some(group))
        }
    };
    let now = epoch_now();
    let group_id = group.as_ref().map(|g| g.id);
    let verdicts: Vec<Verdict> = futures::stream::iter(members)
        .map(|sc| claim_one(app, command, sc, group_id, now))
        .buffer_unordered(app.claim_concurrency)
        .collect()
        .await;

    let mut claimed = Vec::new();
    let mut refused = Vec::new();
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
            Verdict::Refused(r) => refused.push(r),
        }
    }
    let group_name = group.map(|g| g.name.to_string());
    let (accepted, failed) =
        hand_over(app, principal, command, group_name.as_deref(), claimed).await;
    refused.extend(failed);
    refused.sort_by_key(|r| r.id);
    answer(command, group_name.as_deref(), accepted, refused)
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
    let refused = |status, why| Verdict::Refused(reason(&sc, status, why));
    match app.inventory.claim(sc.id, &request).await {
        Ok(ClaimOutcome::Claimed { subcloud, prior }) => Verdict::Accepted {
            subcloud,
            prior,
            op_id: request.op_id,
        },
        Ok(ClaimOutcome::Busy { name, holder }) => refused(
            ReasonStatus::Busy,
            format!(
                "Subcloud {name} is busy: {} operation {} in progress since {}",
                holder.kind, holder.op_id, holder.since
            ),
        ),
        Ok(ClaimOutcome::Contended { name }) => refused(
            ReasonStatus::Busy,
            format!("Subcloud {name} changed while it was being claimed; try again"),
        ),
        Ok(ClaimOutcome::Invalid { reason: why, .. }) => refused(ReasonStatus::Invalid, why),
        Ok(ClaimOutcome::Gone) => refused(
            ReasonStatus::Gone,
            format!("Subcloud {} no longer exists", sc.name),
        ),
        Err(e) => {
            tracing::error!(error = %e, subcloud = %sc.name, "claim failed");
            refused(
                ReasonStatus::Failed,
                "the database is unavailable; try again".into(),
            )
        }
    }
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
            // The claim's own time, which the claim made later than the subcloud's last write.
            created_at: c.subcloud.op_since.clone().unwrap_or_else(|| now.clone()),
            updated_at: c.subcloud.op_since.clone().unwrap_or_else(|| now.clone()),
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

fn answer(
    command: &Command,
    group: Option<&str>,
    accepted: Vec<Subcloud>,
    refused: Vec<SubcloudReason>,
) -> Result<Response<Body>, ApiError> {
    if accepted.is_empty() {
        let count = |status: ReasonStatus| refused.iter().filter(|r| r.status == status).count();
        let (busy, failed) = (count(ReasonStatus::Busy), count(ReasonStatus::Failed));
        if let (Target::Subcloud(r), 1) = (&command.target, count(ReasonStatus::Gone)) {
            return Err(ApiError::NotFound(format!("Subcloud not found: {r}")));
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
        "subclouds": accepted.iter().map(wire::subcloud).collect::<Vec<_>>(),
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
