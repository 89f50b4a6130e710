//! The subcloud-backup routes (SPEC §2, §3): create, delete and restore. A request becomes a
//! typed command, started through `operations::start` (the one way to claim slots), and its
//! outcome is rendered as dcmanager answers.

use super::{empty_response, json_response, ApiError, App, Fields, ReasonStatus, SubcloudReason};
use crate::auth::Principal;
use crate::domain::{
    check_values_fit, digest_hex, without_secrets, OpKind, OpOptions, Ref, Release, Subcloud,
};
use crate::operations::{self, Origin};
use crate::wire;
use base64::Engine;
use http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;

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

    /// The release the request names for its operations: the path's, for a delete. `None`:
    /// each operation is about its subcloud's own software-version (`OpRequest::release`).
    pub fn named_release(&self) -> Option<Release> {
        self.release.clone().filter(|_| self.kind == OpKind::Delete)
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

/// Runs a command for a caller: starts it through `operations::start`, answers.
/// Starts a parsed command and answers it. `key` is the request's scoped `Idempotency-Key`
/// digest, if it has one (`Origin::key`).
pub async fn execute(
    app: &App,
    principal: &Principal,
    command: &Command,
    key: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let origin = Origin {
        requested_by: principal.subject.clone(),
        schedule_id: None,
        key: key.map(str::to_owned),
    };
    let started = operations::start(app.starter(), command, &origin).await?;
    let group_name = started.group.map(|g| g.name.to_string());
    let accepted_any = !started.accepted.is_empty();
    let mut refused = started.skipped;
    refused.extend(started.failed);
    refused.sort_by_key(|r| r.id);
    answer(
        command,
        group_name.as_deref(),
        accepted_any,
        started.members,
        refused,
    )
}

/// The body of an answer that took some subclouds, written straight from the subclouds (keys
/// in the order a `Value` object would print them).
#[derive(serde::Serialize)]
struct Answer<'a> {
    failed: &'a [SubcloudReason],
    skipped: &'a [SubcloudReason],
    subclouds: Vec<wire::SubcloudView<'a>>,
}

/// The answer, as dcmanager gives it: `subclouds` lists every subcloud of the target as it
/// stands after the request (SPEC §3); `skipped` and `failed` say why the others were not
/// taken. A request that took none is an error listing each one's reason.
pub fn answer(
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
    let body = Answer {
        failed: &failed,
        skipped: &skipped,
        subclouds: standing.iter().map(wire::SubcloudView::of).collect(),
    };
    match command.kind {
        OpKind::Delete if skipped.is_empty() && failed.is_empty() => {
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
        OpKind::Delete => Ok(json_response(StatusCode::MULTI_STATUS, &body)),
        _ => Ok(json_response(StatusCode::OK, &body)),
    }
}
