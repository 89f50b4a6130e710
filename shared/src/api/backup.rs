//! The subcloud-backup routes (SPEC §2, §3): create, delete and restore. A request becomes a
//! typed command; each target subcloud's slot is claimed with one conditional write (a
//! group's members in parallel, bounded); each claim gets an operation record and a job on
//! the queue, and a claim whose record or job cannot be written is rolled back at once.

use super::{empty_response, json_response, ApiError, App, Fields, SubcloudReason};
use crate::auth::Principal;
use crate::domain::{
    epoch_now, timestamp_now, without_secrets, Invalid, OpId, OpKind, OpOptions, OpState,
    Operation, Ref, Release, Subcloud,
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

/// `backup_values` / `restore_values` larger than this (as JSON) are refused, so ten jobs
/// always fit one SQS batch.
const VALUES_MAX_BYTES: usize = 16 * 1024;

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
        let subcloud = f.reference("subcloud")?;
        let group = f.reference("group")?;
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
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.to_string().as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
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
    },
    Refused(SubcloudReason),
    Gone,
}

fn reason(sc: &Subcloud, status: &'static str, reason: String) -> SubcloudReason {
    SubcloudReason {
        id: sc.id,
        name: sc.name.to_string(),
        status,
        reason,
    }
}

/// Runs a command for a caller; the answer is rendered by `answer`.
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
            (members, Some(group.name.to_string()))
        }
    };
    let now = epoch_now();
    let verdicts: Vec<Verdict> = futures::stream::iter(members)
        .map(|sc| claim_one(app, command, sc, now))
        .buffer_unordered(app.claim_concurrency)
        .collect()
        .await;

    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut gone = false;
    for verdict in verdicts {
        match verdict {
            Verdict::Accepted { subcloud, prior } => accepted.push((*subcloud, prior)),
            Verdict::Refused(r) => refused.push(r),
            Verdict::Gone => gone = true,
        }
    }
    let (accepted, failed) = hand_over(app, principal, command, group.as_deref(), accepted).await;
    refused.extend(failed);
    refused.sort_by_key(|r| r.id);
    answer(command, group.as_deref(), accepted, refused, gone)
}

async fn claim_one(app: &App, command: &Command, sc: Subcloud, now: u64) -> Verdict {
    let request = ClaimRequest {
        op_id: OpId::new(),
        kind: command.kind,
        local_only: command.options.local_only,
        release: match (&command.release, command.kind) {
            (Some(release), OpKind::Delete) => release.clone(),
            _ => sc.software_version.clone(),
        },
        has_bootstrap_address: command.bootstrap.contains_key(sc.name.as_str()),
        now,
        lease_seconds: app.lease_seconds,
    };
    match app.inventory.claim(sc.id, &request).await {
        Ok(ClaimOutcome::Claimed { subcloud, prior }) => Verdict::Accepted { subcloud, prior },
        Ok(ClaimOutcome::Busy { name, holder }) => Verdict::Refused(reason(
            &sc,
            "busy",
            format!(
                "Subcloud {name} is busy: {} operation {} in progress since {}",
                holder.kind, holder.op_id, holder.since
            ),
        )),
        Ok(ClaimOutcome::Invalid { reason: why, .. }) => {
            Verdict::Refused(reason(&sc, "invalid", why))
        }
        Ok(ClaimOutcome::Gone) => Verdict::Gone,
        Err(e) => {
            tracing::error!(error = %e, subcloud = %sc.name, "claim failed");
            Verdict::Refused(reason(
                &sc,
                "failed",
                "the database is unavailable; try again".into(),
            ))
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
    claimed: Vec<(Subcloud, PriorState)>,
) -> (Vec<Subcloud>, Vec<SubcloudReason>) {
    if claimed.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let now = timestamp_now();
    let operations: Vec<Operation> = claimed
        .iter()
        .map(|(sc, _)| Operation {
            op_id: sc
                .op_id
                .clone()
                .expect("a claimed subcloud holds its operation"),
            kind: command.kind,
            subcloud_id: sc.id,
            subcloud_name: sc.name.to_string(),
            release: match (&command.release, command.kind) {
                (Some(release), OpKind::Delete) => release.clone(),
                _ => sc.software_version.clone(),
            },
            fence: sc.fence,
            options: command.options.clone(),
            requested_by: principal.subject.clone(),
            group: group.map(str::to_owned),
            state: OpState::Queued,
            error: None,
            created_at: now.clone(),
            updated_at: now.clone(),
        })
        .collect();

    let unrecorded = match app.inventory.put_operations(&operations).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "operation records could not be written");
            operations.iter().map(|op| op.op_id.clone()).collect()
        }
    };
    let mut failed = Vec::new();
    let mut recorded = Vec::new();
    for ((sc, prior), op) in claimed.into_iter().zip(operations) {
        if unrecorded.contains(&op.op_id) {
            roll_back(app, &sc, &prior).await;
            failed.push(reason(
                &sc,
                "failed",
                "the operation could not be recorded; try again".into(),
            ));
        } else {
            recorded.push((sc, prior, op));
        }
    }

    let jobs: Vec<JobMessage> = recorded
        .iter()
        .map(|(_, _, op)| JobMessage {
            version: JobMessage::VERSION,
            op_id: op.op_id.clone(),
            kind: op.kind,
            subcloud_id: op.subcloud_id,
            subcloud_name: op.subcloud_name.clone(),
            release: op.release.clone(),
            fence: op.fence,
            options: op.options.clone(),
        })
        .collect();
    let sent = app.jobs.send_all(&jobs).await;
    let mut accepted = Vec::new();
    for ((sc, prior, op), result) in recorded.into_iter().zip(sent) {
        match result {
            Ok(()) => {
                tracing::info!(op_id = %op.op_id, subcloud = %sc.name, kind = op.kind.as_str(), "operation queued");
                accepted.push(sc);
            }
            Err(why) => {
                tracing::error!(op_id = %op.op_id, subcloud = %sc.name, error = %why, "job not queued");
                roll_back(app, &sc, &prior).await;
                if let Err(e) = app
                    .inventory
                    .fail_operation(&op.op_id, &format!("job not queued: {why}"))
                    .await
                {
                    tracing::error!(op_id = %op.op_id, error = %e, "operation record not marked failed");
                }
                failed.push(reason(
                    &sc,
                    "failed",
                    format!("the job could not be queued: {why}"),
                ));
            }
        }
    }
    accepted.sort_by_key(|sc| sc.id);
    (accepted, failed)
}

/// Undoes a claim whose job will never run. If even that fails, the lease expires and the
/// sweeper recovers the slot.
async fn roll_back(app: &App, sc: &Subcloud, prior: &PriorState) {
    match app.inventory.release_claim(sc, prior).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(subcloud = %sc.name, "claim was already gone when rolled back"),
        Err(e) => {
            tracing::error!(subcloud = %sc.name, error = %e, "claim not rolled back; its lease will expire")
        }
    }
}

fn answer(
    command: &Command,
    group: Option<&str>,
    accepted: Vec<Subcloud>,
    refused: Vec<SubcloudReason>,
    gone: bool,
) -> Result<Response<Body>, ApiError> {
    if accepted.is_empty() {
        if let (Target::Subcloud(r), true) = (&command.target, gone) {
            return Err(ApiError::NotFound(format!("Subcloud not found: {r}")));
        }
        let all_busy = !refused.is_empty() && refused.iter().all(|r| r.status == "busy");
        let any_invalid = refused.iter().any(|r| r.status == "invalid");
        let (status, message) = match (&command.target, group) {
            (Target::Subcloud(_), _) => {
                let status = if all_busy {
                    StatusCode::CONFLICT
                } else if any_invalid {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let message = refused
                    .first()
                    .map(|r| r.reason.clone())
                    .unwrap_or_default();
                (status, message)
            }
            (Target::Group(_), group) => {
                let group = group.unwrap_or_default();
                if all_busy {
                    (
                        StatusCode::CONFLICT,
                        format!("Every subcloud in group {group} has an operation in progress"),
                    )
                } else if any_invalid || refused.iter().any(|r| r.status == "busy") {
                    (
                        StatusCode::BAD_REQUEST,
                        format!(
                            "None of the subclouds in group {group} are in a valid state for {}",
                            command.kind
                        ),
                    )
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "No subcloud in group {group} could be handed to a worker; try again"
                        ),
                    )
                }
            }
        };
        return Err(ApiError::Subclouds {
            status,
            message,
            subclouds: refused,
        });
    }
    let (skipped, failed): (Vec<_>, Vec<_>) =
        refused.into_iter().partition(|r| r.status != "failed");
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
