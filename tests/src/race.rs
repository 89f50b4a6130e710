//! The race between many create requests for the same subclouds, run at the same instant
//! from tokio tasks in the test process and from separate OS processes (`race-client`),
//! each with its own clients and handler state, as separate Lambda instances would be.

use crate::Stack;
use dcbackup::api::Route;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One create request: by subcloud or by group name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Target {
    Subcloud(String),
    Group(String),
}

/// What a race-client process is told to do.
#[derive(Debug, Serialize, Deserialize)]
pub struct Spec {
    pub prefix: String,
    /// Unix milliseconds at which every request is sent.
    pub start_at_ms: u64,
    pub targets: Vec<Target>,
}

/// What came back for one request: its status and the subclouds it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub status: u16,
    pub accepted: Vec<String>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Waits for the start instant, then sends every request at once.
pub async fn fire(stack: &Stack, start_at_ms: u64, targets: &[Target]) -> Vec<Outcome> {
    let wait = start_at_ms.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let requests = targets.iter().map(|target| async move {
        let body = match target {
            Target::Subcloud(name) => json!({"subcloud": name}),
            Target::Group(name) => json!({"group": name}),
        };
        let reply = stack
            .call(Route::BackupCreate, "/v1.0/subcloud-backup", Some(body))
            .await;
        // `subclouds` lists every member as it stands; those not taken are also in
        // `skipped` or `failed`.
        let names = |key: &str| -> Vec<String> {
            reply.body[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let accepted = if reply.status == StatusCode::OK {
            let refused = [names("skipped"), names("failed")].concat();
            names("subclouds")
                .into_iter()
                .filter(|name| !refused.contains(name))
                .collect()
        } else {
            Vec::new()
        };
        Outcome {
            status: reply.status.as_u16(),
            accepted,
        }
    });
    let handles: Vec<_> = requests.collect();
    futures::future::join_all(handles).await
}

/// A spec as the race-client reads it.
pub fn spec_json(spec: &Spec) -> Value {
    serde_json::to_value(spec).expect("a spec serializes")
}
