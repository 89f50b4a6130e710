//! `make bench` (issue #17): each performance target next to its baseline, in one run on this
//! machine, printed and written into BENCHMARKS.md.
//!
//! - P1: group create, delete and restore through the real handler (`dcbackup::api::handle`,
//!   token check included) against a bare-SDK loop doing the same conditional claims and
//!   10-message batch sends at the same concurrency, at 100, 1,000 and 5,000 subclouds.
//! - P2: single-subcloud create against a bare UpdateItem + SendMessage, one at a time.
//! - P3: cold start (exec → first `/next` of a local Runtime API stand-in) of the release
//!   function against Python 3.11 + boto3 + PyJWT through awslambdaric, and the zipped size.
//! - P4: own CPU per request, from the criterion benchmark `benches/own_cpu.rs` (run first by
//!   `make bench`).
//!
//! Every measurement is repeated; tables give the minimum and the median. AWS calls are
//! counted by an SDK interceptor on both sides.

mod coldstart;
mod report;

use anyhow::{ensure, Context};
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use dcbackup::api::{self, App, Route};
use dcbackup::auth::{AuthConfig, Authenticator, SigningAlgorithm};
use dcbackup::config::Config;
use dcbackup::domain::{
    epoch_now, timestamp_now, AgentUrl, AvailabilityStatus, BackupStatus, DeployStatus,
    ManagementState, Name, NewGroup, NewSubcloud, OpKind, Ref, Release,
};
use dcbackup::resources::Resources;
use dcbackup::runtime::Clients;
use dcbackup::store::{Store, HELD, SLOT_ATTRIBUTES};
use futures::StreamExt;
use report::{Sample, Samples};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// P1's group sizes: the per-subcloud cost should not grow from the first to the last.
const GROUP_SIZES: [usize; 3] = [100, 1_000, 5_000];
const KINDS: [OpKind; 3] = [OpKind::Create, OpKind::Delete, OpKind::Restore];
/// P2: single creates per round; each round gives one p50.
const SINGLES_PER_ROUND: usize = 100;
/// Registrations and slot resets in flight (not measured).
const SEED_CONCURRENCY: usize = 64;
/// The release every seeded subcloud runs and has a central backup of.
const RELEASE: &str = "24.09";

/// Counts every AWS call (one per operation, retries not included).
#[derive(Debug, Clone, Default)]
struct CallCounter(Arc<AtomicUsize>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl CallCounter {
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::Relaxed)
    }
}

struct Bench {
    app: App,
    clients: Clients,
    resources: Resources,
    calls: CallCounter,
    token: String,
    queue_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = report::Settings::from_env()?;
    let own_cpu = report::own_cpu(&settings.criterion_dir)?;
    let cold = coldstart::measure(&settings).await?;
    let bench = Bench::new().await?;
    let mut groups = Vec::new();
    for size in GROUP_SIZES {
        let handler_group = bench.seed_group(&format!("handler-{size}"), size).await?;
        let bare_group = bench.seed_group(&format!("bare-{size}"), size).await?;
        for kind in KINDS {
            let row = bench
                .group_row(kind, &handler_group, &bare_group, settings.repeats)
                .await?;
            println!("{}", row.line());
            groups.push(row);
        }
    }
    let singles = bench.singles(settings.repeats).await?;
    let results = report::Results {
        groups,
        singles,
        cold,
        own_cpu,
    };
    let text = results.markdown(&settings);
    println!("\n{text}");
    report::write(&settings.report, &text)?;
    println!("written to {}", settings.report.display());
    Ok(())
}

/// A seeded group: its name and its members' ids.
struct Group {
    name: String,
    ids: Vec<u64>,
}

impl Bench {
    async fn new() -> anyhow::Result<Bench> {
        let shared = aws_config::load_from_env().await;
        let calls = CallCounter::default();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared)
            .interceptor(calls.clone())
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(&shared)
            .interceptor(calls.clone())
            .build();
        let clients = Clients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            s3: Clients::from_env().await.s3,
        };
        let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let resources = Resources::with_prefix(&prefix)?;
        dcbackup::provision::provision(&clients, &resources)
            .await
            .context("provisioning the bench stack")?;
        let secret = uuid::Uuid::new_v4().simple().to_string().repeat(2);
        let auth = AuthConfig::builder("dcbackup-bench", "dcbackup")
            .algorithms([SigningAlgorithm::Hs256])
            .hs256_secret(secret)
            .build()?;
        let token = auth.mint_local_token(
            "bench",
            &["admin".into()],
            "admin",
            Duration::from_secs(3600),
        )?;
        let app = App::new(
            &clients,
            &Config::new(resources.clone()),
            Arc::new(Authenticator::new(auth)?),
        );
        let queue_url = app.jobs.url().await.map_err(anyhow::Error::msg)?.to_owned();
        Ok(Bench {
            app,
            clients,
            resources,
            calls,
            token,
            queue_url,
        })
    }

    fn inventory(&self) -> &Store {
        &self.app.inventory
    }

    /// A group of `size` subclouds, each valid for a create and a delete, and for a restore
    /// once [`Bench::reset`] unmanages it.
    async fn seed_group(&self, name: &str, size: usize) -> anyhow::Result<Group> {
        let group = NewGroup {
            name: Name::parse("name", name)?,
            description: String::new(),
            update_apply_type: dcbackup::domain::ApplyType::Parallel,
            max_parallel_subclouds: 2,
        };
        self.inventory().create_group(group).await?;
        let ids = futures::stream::iter(0..size)
            .map(|i| self.seed_subcloud(format!("{name}-sc{i}"), Some(name)))
            .buffer_unordered(SEED_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<u64>>>()?;
        self.calls.take();
        Ok(Group {
            name: name.to_owned(),
            ids,
        })
    }

    async fn seed_subcloud(&self, name: String, group: Option<&str>) -> anyhow::Result<u64> {
        let new = NewSubcloud {
            group: group
                .map(|g| Name::parse("group", g).map(Ref::Name))
                .transpose()?,
            management_state: Some(ManagementState::Managed),
            availability_status: Some(AvailabilityStatus::Online),
            agent_url: Some(AgentUrl::parse("agent_url", "https://127.0.0.1:8443")?),
            ..NewSubcloud::new(
                Name::parse("name", &name)?,
                Release::parse("release", RELEASE)?,
            )
        };
        Ok(self.inventory().register(new).await?.id)
    }

    /// Frees every member's slot and makes it valid for `kind` (unmanaged for a restore,
    /// managed otherwise, deployed, with a central backup of [`RELEASE`]); not measured.
    async fn reset(&self, group: &Group, kind: OpKind) -> anyhow::Result<()> {
        let management = match kind {
            OpKind::Restore => ManagementState::Unmanaged,
            _ => ManagementState::Managed,
        };
        futures::stream::iter(&group.ids)
            .map(|&id| {
                self.clients
                    .dynamodb
                    .update_item()
                    .table_name(&self.resources.subclouds_table)
                    .key("id", AttributeValue::N(id.to_string()))
                    .update_expression(format!(
                        "REMOVE {} SET management_state = :m, deploy_status = :d \
                         ADD central_backups :r",
                        SLOT_ATTRIBUTES.join(", ")
                    ))
                    .expression_attribute_values(":m", s(management.as_str()))
                    .expression_attribute_values(":d", s(DeployStatus::COMPLETE))
                    .expression_attribute_values(":r", AttributeValue::Ss(vec![RELEASE.into()]))
                    .send()
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        self.drain_queue().await?;
        self.calls.take();
        Ok(())
    }

    fn request(&self, kind: OpKind, body: serde_json::Value) -> (Route, lambda_http::Request) {
        let (route, method, uri) = match kind {
            OpKind::Create => (Route::BackupCreate, "POST", "/v1.0/subcloud-backup".into()),
            OpKind::Delete => (
                Route::BackupDelete,
                "PATCH",
                format!("/v1.0/subcloud-backup/delete/{RELEASE}"),
            ),
            OpKind::Restore => (
                Route::BackupRestore,
                "PATCH",
                "/v1.0/subcloud-backup/restore".into(),
            ),
        };
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .header("x-auth-token", &self.token)
            .body(lambda_http::Body::Text(body.to_string()))
            .expect("a valid request");
        (route, request)
    }

    /// One P1 row: `repeats` handler runs and bare runs, interleaved, each on freshly reset
    /// groups of the same size.
    async fn group_row(
        &self,
        kind: OpKind,
        handler_group: &Group,
        bare_group: &Group,
        repeats: usize,
    ) -> anyhow::Result<report::GroupRow> {
        let mut handler = Samples::default();
        let mut bare = Samples::default();
        for _ in 0..repeats {
            self.reset(handler_group, kind).await?;
            self.reset(bare_group, kind).await?;
            handler.push(self.handler_group(kind, handler_group).await?);
            bare.push(self.bare_group(kind, bare_group).await?);
        }
        Ok(report::GroupRow {
            kind,
            size: handler_group.ids.len(),
            handler,
            bare,
        })
    }

    async fn handler_group(&self, kind: OpKind, group: &Group) -> anyhow::Result<Sample> {
        let (route, request) = self.request(kind, serde_json::json!({ "group": group.name }));
        let started = Instant::now();
        let response = api::handle(&self.app, route, request).await;
        let elapsed = started.elapsed();
        let calls = self.calls.take();
        match response.status().as_u16() {
            // A delete that took every member answers without a body.
            204 if kind == OpKind::Delete => {}
            200 => {
                let body: serde_json::Value = serde_json::from_slice(response.body().as_ref())?;
                ensure!(
                    body["subclouds"].as_array().map(Vec::len) == Some(group.ids.len())
                        && body["skipped"].as_array().is_some_and(Vec::is_empty),
                    "not every member started: {body}"
                );
            }
            status => anyhow::bail!(
                "group {kind} answered {status}: {}",
                String::from_utf8_lossy(response.body().as_ref())
            ),
        }
        Ok(Sample { elapsed, calls })
    }

    /// The claim as a hand-written UpdateItem: the handler's condition for `kind` and its
    /// SET, nothing returned.
    async fn bare_claim(&self, kind: OpKind, id: u64, group: Option<u64>) -> anyhow::Result<()> {
        let now = epoch_now();
        let since = timestamp_now();
        let mut values: HashMap<String, AttributeValue> = HashMap::from([
            (":op".into(), s(&uuid::Uuid::new_v4().to_string())),
            (":kind".into(), s(kind.as_str())),
            (":since".into(), s(&since)),
            (":lease".into(), n(now + 900)),
            (":held".into(), s(HELD)),
            (":zero".into(), n(0)),
            (":one".into(), n(1)),
        ]);
        let mut condition = vec![
            "attribute_exists(id)".to_owned(),
            "attribute_not_exists(op_id)".to_owned(),
            "(attribute_not_exists(updated_at) OR updated_at < :since)".to_owned(),
        ];
        if let Some(group) = group {
            values.insert(":group".into(), n(group));
            condition.push("group_id = :group".into());
        }
        let state = match kind {
            OpKind::Create => {
                values.insert(":managed".into(), s(ManagementState::Managed.as_str()));
                values.insert(":online".into(), s(AvailabilityStatus::Online.as_str()));
                values.insert(":complete".into(), s(DeployStatus::COMPLETE));
                condition.push(
                    "management_state = :managed AND availability_status = :online \
                     AND deploy_status = :complete"
                        .into(),
                );
                values.insert(":state".into(), s(BackupStatus::Validating.as_str()));
                "backup_status"
            }
            OpKind::Delete => {
                values.insert(":state".into(), s(BackupStatus::DeletingBackup.as_str()));
                "backup_status"
            }
            OpKind::Restore => {
                values.insert(":unmanaged".into(), s(ManagementState::Unmanaged.as_str()));
                let forbidden: Vec<String> = DeployStatus::forbidding_restore()
                    .enumerate()
                    .map(|(i, state)| {
                        values.insert(format!(":f{i}"), s(state));
                        format!(":f{i}")
                    })
                    .collect();
                values.insert(":release".into(), s(RELEASE));
                condition.push(format!(
                    "management_state = :unmanaged AND NOT deploy_status IN ({}) \
                     AND software_version = :release AND contains(central_backups, :release) \
                     AND attribute_exists(agent_url)",
                    forbidden.join(", ")
                ));
                values.insert(":state".into(), s(DeployStatus::PRE_RESTORE));
                "deploy_status"
            }
        };
        self.clients
            .dynamodb
            .update_item()
            .table_name(&self.resources.subclouds_table)
            .key("id", n(id))
            .update_expression(format!(
                "SET op_id = :op, op_kind = :kind, op_since = :since, lease_expires_at = :lease, \
                 lease_held = :held, fence = if_not_exists(fence, :zero) + :one, \
                 updated_at = :since, {state} = :state"
            ))
            .condition_expression(condition.join(" AND "))
            .set_expression_attribute_values(Some(values))
            .send()
            .await?;
        Ok(())
    }

    async fn bare_group(&self, kind: OpKind, group: &Group) -> anyhow::Result<Sample> {
        let group_id = self
            .inventory()
            .group(&Ref::Name(Name::parse("group", &group.name)?))
            .await?
            .id;
        self.calls.take();
        let started = Instant::now();
        let claimed: Vec<u64> = futures::stream::iter(group.ids.iter().copied())
            .map(|id| async move { self.bare_claim(kind, id, Some(group_id)).await.map(|_| id) })
            .buffer_unordered(self.app.claim_concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        for chunk in claimed.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(format!("{{\"subcloud_id\":{id}}}"))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.clients
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await?;
        }
        let elapsed = started.elapsed();
        Ok(Sample {
            elapsed,
            calls: self.calls.take(),
        })
    }

    /// P2: `rounds` rounds of single creates, the handler's and the bare ones interleaved by
    /// round, each on fresh subclouds.
    async fn singles(&self, rounds: usize) -> anyhow::Result<report::Singles> {
        let mut handler = Vec::new();
        let mut bare = Vec::new();
        for round in 0..rounds {
            handler.push(self.handler_singles(round).await?);
            bare.push(self.bare_singles(round).await?);
        }
        Ok(report::Singles { handler, bare })
    }

    async fn fresh_subclouds(&self, label: &str) -> anyhow::Result<Vec<u64>> {
        let ids = futures::stream::iter(0..SINGLES_PER_ROUND)
            .map(|i| self.seed_subcloud(format!("{label}-{i}"), None))
            .buffer_unordered(SEED_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        self.calls.take();
        Ok(ids)
    }

    async fn handler_singles(&self, round: usize) -> anyhow::Result<Vec<Duration>> {
        let ids = self.fresh_subclouds(&format!("hsingle{round}")).await?;
        let mut samples = Vec::with_capacity(ids.len());
        for id in ids {
            let (route, request) =
                self.request(OpKind::Create, serde_json::json!({ "subcloud": id }));
            let started = Instant::now();
            let response = api::handle(&self.app, route, request).await;
            samples.push(started.elapsed());
            ensure!(
                response.status() == 200,
                "single create answered {}",
                response.status()
            );
        }
        self.drain_queue().await?;
        Ok(samples)
    }

    async fn bare_singles(&self, round: usize) -> anyhow::Result<Vec<Duration>> {
        let ids = self.fresh_subclouds(&format!("bsingle{round}")).await?;
        let mut samples = Vec::with_capacity(ids.len());
        for id in ids {
            let started = Instant::now();
            self.bare_claim(OpKind::Create, id, None).await?;
            self.clients
                .sqs
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(format!("{{\"subcloud_id\":{id}}}"))
                .send()
                .await?;
            samples.push(started.elapsed());
        }
        self.drain_queue().await?;
        Ok(samples)
    }

    /// Empties the jobs queue between measurements so the emulator's queue stays small.
    async fn drain_queue(&self) -> anyhow::Result<()> {
        self.clients
            .sqs
            .purge_queue()
            .queue_url(&self.queue_url)
            .send()
            .await?;
        Ok(())
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
