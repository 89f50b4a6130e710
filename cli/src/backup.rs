//! `subcloud-backup create|delete|restore`: builds dcmanager's request, sends it, prints what
//! was accepted and what was skipped, and with `--wait` follows the accepted subclouds.

use crate::api::Api;
use crate::args::{BackupCmd, Target};
use crate::error::CliError;
use crate::follow::{self, Started};
use crate::output::{id, items, text, Printer, View};
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::path::Path;

/// The three operations, with what tells their progress on a subcloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Delete,
    Restore,
}

impl Kind {
    /// The subcloud key an operation of this kind moves (SPEC §1 States).
    pub fn status_key(self) -> &'static str {
        match self {
            Kind::Create | Kind::Delete => "backup-status",
            Kind::Restore => "deploy-status",
        }
    }

    /// The transitory states it passes, in order (its progress steps).
    pub fn steps(self) -> &'static [&'static str] {
        match self {
            Kind::Create => &["validating", "pre-backup", "backing-up"],
            Kind::Delete => &["deleting-backup"],
            Kind::Restore => &["pre-restore", "restoring"],
        }
    }

    /// The operation's `kind` in the API's records.
    pub fn api_name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Delete => "delete",
            Kind::Restore => "restore",
        }
    }
}

/// The request body's target and options shared by the three commands.
fn base_body(target: &Target, local_only: bool) -> Map<String, Value> {
    let mut body = Map::new();
    if let Some(s) = &target.subcloud {
        body.insert("subcloud".into(), json!(s));
    }
    if let Some(g) = &target.group {
        body.insert("group".into(), json!(g));
    }
    body.insert("local_only".into(), json!(local_only));
    body
}

/// A values file: YAML (JSON is YAML too), sent as the object it holds.
pub fn values_file(flag: &str, path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("{flag} {}: {e}", path.display())))?;
    serde_yaml::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{flag} {}: not YAML: {e}", path.display())))
}

/// `--sysadmin-password`: the value given, or asked for without echo; sent base64-encoded
/// as dcmanager's client sends it.
fn password(given: &Option<Option<String>>) -> Result<Option<String>, CliError> {
    let plain = match given {
        None => return Ok(None),
        Some(Some(p)) => p.clone(),
        Some(None) => rpassword::prompt_password("Enter the sysadmin password for the subcloud: ")
            .map_err(|e| {
                CliError::Usage(format!(
                    "--sysadmin-password without a value needs a terminal to ask on: {e}"
                ))
            })?,
    };
    Ok(Some(
        base64::engine::general_purpose::STANDARD.encode(plain),
    ))
}

/// Runs one subcloud-backup command; `None` when `--wait` already printed the outcome.
pub async fn run(api: &Api, printer: &Printer, cmd: BackupCmd) -> Result<Option<View>, CliError> {
    let (kind, target, body, segments, wait) = match &cmd {
        BackupCmd::Create(a) => {
            let mut b = base_body(&a.target, a.local_only);
            b.insert("registry_images".into(), json!(a.registry_images));
            if let Some(path) = &a.backup_values {
                b.insert(
                    "backup_values".into(),
                    values_file("--backup-values", path)?,
                );
            }
            if let Some(p) = password(&a.sysadmin_password)? {
                b.insert("sysadmin_password".into(), json!(p));
            }
            let path: Vec<String> = vec!["subcloud-backup".into()];
            (Kind::Create, &a.target, b, path, &a.wait)
        }
        BackupCmd::Delete(a) => {
            let mut b = base_body(&a.target, a.local_only);
            if let Some(p) = password(&a.sysadmin_password)? {
                b.insert("sysadmin_password".into(), json!(p));
            }
            let path = vec!["subcloud-backup".into(), "delete".into(), a.release.clone()];
            (Kind::Delete, &a.target, b, path, &a.wait)
        }
        BackupCmd::Restore(a) => {
            let mut b = base_body(&a.target, a.local_only);
            b.insert("registry_images".into(), json!(a.registry_images));
            if let Some(path) = &a.restore_values {
                b.insert(
                    "restore_values".into(),
                    values_file("--restore-values", path)?,
                );
            }
            if let Some(p) = password(&a.sysadmin_password)? {
                b.insert("sysadmin_password".into(), json!(p));
            }
            let path = vec!["subcloud-backup".into(), "restore".into()];
            (Kind::Restore, &a.target, b, path, &a.wait)
        }
    };
    let method = if kind == Kind::Create {
        Method::POST
    } else {
        Method::PATCH
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let reply = api
        .send(method, &segments, Some(&Value::Object(body)))
        .await?;
    let answer = reply.body;
    let refused: Vec<Value> = items(&answer, "skipped")
        .iter()
        .chain(items(&answer, "failed"))
        .cloned()
        .collect();
    let started = if answer.is_null() {
        // A delete that every target accepted answers 204, without ids: find them.
        follow::resolve_deletes(api, target).await?
    } else {
        accepted(&answer, &refused)
    };
    if !wait.wait {
        return Ok(Some(accepted_view(
            printer, kind, answer, &started, &refused,
        )));
    }
    for r in &refused {
        eprintln!("{}: not started: {}", text(&r["name"]), text(&r["reason"]));
    }
    follow::follow(
        api,
        printer,
        kind,
        target.group.as_deref(),
        started,
        refused,
        wait,
    )
    .await?;
    Ok(None)
}

/// The subclouds this request started: those of the answer holding an operation, less the
/// skipped and failed ones (the answer lists every target, SPEC §3 "Answer").
fn accepted(answer: &Value, refused: &[Value]) -> Vec<Started> {
    items(answer, "subclouds")
        .iter()
        .filter(|sc| !refused.iter().any(|r| r["name"] == sc["name"]))
        .filter_map(|sc| {
            Some(Started {
                id: sc["id"].as_u64()?,
                name: text(&sc["name"]),
                op_id: sc["operation"]["id"].as_str()?.to_owned(),
            })
        })
        .collect()
}

fn accepted_view(
    printer: &Printer,
    kind: Kind,
    answer: Value,
    started: &[Started],
    refused: &[Value],
) -> View {
    for r in refused {
        eprintln!("{}: not started: {}", text(&r["name"]), text(&r["reason"]));
    }
    let mut table = printer.table(["id", "name", kind.status_key(), "operation"]);
    for s in started {
        let state = items(&answer, "subclouds")
            .iter()
            .find(|sc| id(sc) == s.id.to_string())
            .map(|sc| text(&sc[kind.status_key()]))
            .unwrap_or_else(|| kind.steps()[0].to_owned());
        table.add_row([s.id.to_string(), s.name.clone(), state, s.op_id.clone()]);
    }
    // A delete every target accepted answers 204, without a body.
    let data = if answer.is_null() {
        json!({"skipped": [], "failed": []})
    } else {
        answer
    };
    View {
        data,
        tables: vec![table],
        ids: started.iter().map(|s| s.op_id.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_are_the_subclouds_holding_an_operation_less_the_refused() {
        // SPEC §3: the answer may list every member; a busy one holds another's operation.
        let answer = json!({
            "subclouds": [
                {"id": 1, "name": "a", "operation": {"id": "op-a"}},
                {"id": 2, "name": "b", "operation": {"id": "op-other"}},
                {"id": 3, "name": "c", "operation": null},
            ],
            "skipped": [{"id": 2, "name": "b", "status": "busy", "reason": "busy"}],
            "failed": [],
        });
        let refused: Vec<Value> = items(&answer, "skipped").to_vec();
        let started = accepted(&answer, &refused);
        assert_eq!(started.len(), 1);
        assert_eq!((started[0].id, started[0].op_id.as_str()), (1, "op-a"));
    }
}
