//! The race on the operation slot, fired at once from tokio tasks in the test process and
//! from separate OS processes (`race-client`), each with its own clients and handler state,
//! as separate Lambda instances would be. Every process first says it is ready, then waits
//! for one go signal on a pipe (`barrier`), so no process fires alone.

use crate::Stack;
use dcbackup::api::Route;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, Write};

/// A subcloud-backup target: a subcloud or a group, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Subcloud(String),
    Group(String),
}

impl Target {
    fn body(&self) -> Value {
        match self {
            Target::Subcloud(name) => json!({"subcloud": name}),
            Target::Group(name) => json!({"group": name}),
        }
    }
}

/// One racing request: the three slot claims and the inventory writes that respect the slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// `POST /v1.0/subcloud-backup`.
    Create(Target),
    /// `PATCH /v1.0/subcloud-backup/restore`, reaching each named subcloud at 127.0.0.1.
    Restore {
        target: Target,
        members: Vec<String>,
    },
    /// `PATCH /v1.0/subcloud-backup/delete/{release}`.
    Delete { target: Target, release: String },
    /// `PATCH /v1.0/subclouds/{name}` with this body.
    Patch { subcloud: String, body: Value },
    /// `DELETE /v1.0/subclouds/{name}`.
    Remove(String),
}

/// What a race-client process is told to do.
#[derive(Debug, Serialize, Deserialize)]
pub struct Spec {
    pub prefix: String,
    pub requests: Vec<Request>,
}

/// What came back for one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub request: Request,
    pub status: u16,
    /// The subclouds it started (the answer's `subclouds` less `skipped` and `failed`; for a
    /// 204 delete, every subcloud of its target).
    pub accepted: Vec<String>,
    /// The names in the answer's `subclouds` (SPEC §3: every subcloud of the target).
    pub listed: Vec<String>,
    /// The names in `skipped` and `failed`.
    pub refused: Vec<String>,
    /// An error answer's message and each subcloud's reason, so a failing round says why.
    #[serde(default)]
    pub error: Value,
}

fn names(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one request through its route's handler and reads the answer.
async fn send(stack: &Stack, request: &Request) -> Outcome {
    let reply = match request {
        Request::Create(target) => {
            stack
                .call(
                    Route::BackupCreate,
                    "/v1.0/subcloud-backup",
                    Some(target.body()),
                )
                .await
        }
        Request::Restore { target, members } => {
            let mut body = target.body();
            let addresses: serde_json::Map<String, Value> = members
                .iter()
                .map(|m| (m.clone(), json!("127.0.0.1")))
                .collect();
            body["restore_values"] = json!({ "bootstrap_address": addresses });
            stack
                .call(
                    Route::BackupRestore,
                    "/v1.0/subcloud-backup/restore",
                    Some(body),
                )
                .await
        }
        Request::Delete { target, release } => {
            stack
                .call(
                    Route::BackupDelete,
                    &format!("/v1.0/subcloud-backup/delete/{release}"),
                    Some(target.body()),
                )
                .await
        }
        Request::Patch { subcloud, body } => {
            stack
                .call(
                    Route::SubcloudsUpdate,
                    &format!("/v1.0/subclouds/{subcloud}"),
                    Some(body.clone()),
                )
                .await
        }
        Request::Remove(subcloud) => {
            stack
                .call(
                    Route::SubcloudsDelete,
                    &format!("/v1.0/subclouds/{subcloud}"),
                    None,
                )
                .await
        }
    };
    let status = reply.status.as_u16();
    let listed = names(&reply.body, "subclouds");
    let refused = [names(&reply.body, "skipped"), names(&reply.body, "failed")].concat();
    let accepted = match (request, status) {
        (Request::Create(_) | Request::Restore { .. }, 200) | (Request::Delete { .. }, 207) => {
            listed
                .iter()
                .filter(|n| !refused.contains(n))
                .cloned()
                .collect()
        }
        // A 204 delete names none (every subcloud of its target started): the caller knows them.
        _ => Vec::new(),
    };
    Outcome {
        request: request.clone(),
        status,
        accepted,
        listed,
        refused,
        error: reply.body["error"].clone(),
    }
}

/// Sends every request at once and waits for every answer.
pub async fn fire(stack: &Stack, requests: &[Request]) -> Vec<Outcome> {
    futures::future::join_all(requests.iter().map(|r| send(stack, r))).await
}

/// The line a process writes when it is ready to fire, and the line that lets it fire.
pub const READY: &str = "ready";
pub const GO: &str = "go";

/// A race-client's side of the barrier: says it is ready on `out`, then blocks until the go
/// line arrives on `input`.
pub fn barrier(input: &mut impl BufRead, out: &mut impl Write) {
    writeln!(out, "{READY}")
        .and_then(|()| out.flush())
        .expect("signalling readiness");
    let mut line = String::new();
    input.read_line(&mut line).expect("reading the go signal");
    assert_eq!(line.trim(), GO, "the go signal");
}
