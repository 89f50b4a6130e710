//! `make bench`: what the subcloud-backup create handler costs next to the least any
//! implementation must do — the same conditional writes and batch sends, made directly
//! with the SDK at the same concurrency, in the same run against the same local engines.
//! Prints a markdown table (copied into BENCHMARKS.md). AWS calls are counted by an SDK
//! interceptor on both sides.

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
    epoch_now, AvailabilityStatus, ManagementState, Name, NewGroup, NewSubcloud, Ref, Release,
};
use dcbackup::resources::Resources;
use dcbackup::runtime::Clients;
use dcbackup::store::Inventory;
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUP_SIZES: [usize; 4] = [10, 100, 1_000, 5_000];
const SINGLE_SAMPLES: usize = 300;
/// Registrations in flight while seeding (not measured).
const SEED_CONCURRENCY: usize = 64;

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
    let bench = Bench::new().await?;
    println!("| group size | handler | handler calls | bare SDK | bare calls | handler / bare |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for size in GROUP_SIZES {
        let (handler, handler_calls) = bench.handler_group(size).await?;
        let (bare, bare_calls) = bench.bare_group(size).await?;
        println!(
            "| {size} | {} | {handler_calls} | {} | {bare_calls} | {:.2} |",
            ms(handler),
            ms(bare),
            handler.as_secs_f64() / bare.as_secs_f64()
        );
    }
    let handler = bench.handler_singles().await?;
    let bare = bench.bare_singles().await?;
    println!();
    println!("| single-subcloud create ({SINGLE_SAMPLES} samples) | p50 | p99 |");
    println!("|---|---:|---:|");
    println!(
        "| handler | {} | {} |",
        ms(percentile(&handler, 50)),
        ms(percentile(&handler, 99))
    );
    println!(
        "| bare SDK (UpdateItem + SendMessage) | {} | {} |",
        ms(percentile(&bare, 50)),
        ms(percentile(&bare, 99))
    );
    println!(
        "| ratio | {:.2} | {:.2} |",
        percentile(&handler, 50).as_secs_f64() / percentile(&bare, 50).as_secs_f64(),
        percentile(&handler, 99).as_secs_f64() / percentile(&bare, 99).as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
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

    fn inventory(&self) -> &Inventory {
        &self.app.inventory
    }

    /// A group of `size` subclouds, each valid for create; returns their ids.
    async fn seed_group(&self, name: &str, size: usize) -> anyhow::Result<Vec<u64>> {
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
        self.drain_queue().await?;
        self.calls.take();
        Ok(ids)
    }

    async fn seed_subcloud(&self, name: String, group: Option<&str>) -> anyhow::Result<u64> {
        let new = NewSubcloud {
            group: group
                .map(|g| Name::parse("group", g).map(Ref::Name))
                .transpose()?,
            management_state: Some(ManagementState::Managed),
            availability_status: Some(AvailabilityStatus::Online),
            ..NewSubcloud::new(
                Name::parse("name", &name)?,
                Release::parse("release", "24.09")?,
            )
        };
        Ok(self.inventory().register(new).await?.id)
    }

    fn request(&self, body: serde_json::Value) -> lambda_http::Request {
        http::Request::builder()
            .method("POST")
            .uri("/v1.0/subcloud-backup")
            .header("content-type", "application/json")
            .header("x-auth-token", &self.token)
            .body(lambda_http::Body::Text(body.to_string()))
            .expect("a valid request")
    }

    async fn handler_group(&self, size: usize) -> anyhow::Result<(Duration, usize)> {
        let name = format!("handler-{size}");
        self.seed_group(&name, size).await?;
        let request = self.request(serde_json::json!({ "group": name }));
        let started = Instant::now();
        let response = api::handle(&self.app, Route::BackupCreate, request).await;
        let elapsed = started.elapsed();
        let calls = self.calls.take();
        ensure!(
            response.status() == 200,
            "group create answered {}",
            response.status()
        );
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref())?;
        ensure!(
            body["subclouds"].as_array().map(Vec::len) == Some(size),
            "not every member started"
        );
        Ok((elapsed, calls))
    }

    /// The claim as a hand-written UpdateItem: the same condition, the same SET.
    async fn bare_claim(&self, id: u64) -> anyhow::Result<()> {
        let now = epoch_now();
        self.clients
            .dynamodb
            .update_item()
            .table_name(&self.resources.subclouds_table)
            .key("id", AttributeValue::N(id.to_string()))
            .update_expression(
                "SET op_id = :op, op_kind = :kind, op_since = :since, lease_expires_at = :lease, \
                 fence = if_not_exists(fence, :zero) + :one, updated_at = :since, backup_status = :state",
            )
            .condition_expression(
                "attribute_exists(id) AND (attribute_not_exists(op_id) OR lease_expires_at <= :now) \
                 AND management_state = :managed AND availability_status = :online AND deploy_status = :complete",
            )
            .expression_attribute_values(":op", AttributeValue::S(uuid::Uuid::new_v4().to_string()))
            .expression_attribute_values(":kind", AttributeValue::S("create".into()))
            .expression_attribute_values(":since", AttributeValue::S(dcbackup::domain::timestamp_now()))
            .expression_attribute_values(":lease", AttributeValue::N((now + 900).to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":state", AttributeValue::S("validating".into()))
            .expression_attribute_values(":managed", AttributeValue::S("managed".into()))
            .expression_attribute_values(":online", AttributeValue::S("online".into()))
            .expression_attribute_values(":complete", AttributeValue::S("complete".into()))
            .send()
            .await?;
        Ok(())
    }

    async fn bare_group(&self, size: usize) -> anyhow::Result<(Duration, usize)> {
        let ids = self.seed_group(&format!("bare-{size}"), size).await?;
        let started = Instant::now();
        let claimed: Vec<u64> = futures::stream::iter(ids)
            .map(|id| async move { self.bare_claim(id).await.map(|_| id) })
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
        Ok((elapsed, self.calls.take()))
    }

    async fn singles(&self, label: &str) -> anyhow::Result<Vec<u64>> {
        let ids = futures::stream::iter(0..SINGLE_SAMPLES)
            .map(|i| self.seed_subcloud(format!("{label}-{i}"), None))
            .buffer_unordered(SEED_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        self.calls.take();
        Ok(ids)
    }

    async fn handler_singles(&self) -> anyhow::Result<Vec<Duration>> {
        let ids = self.singles("hsingle").await?;
        let mut samples = Vec::with_capacity(ids.len());
        for id in ids {
            let request = self.request(serde_json::json!({ "subcloud": id }));
            let started = Instant::now();
            let response = api::handle(&self.app, Route::BackupCreate, request).await;
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

    async fn bare_singles(&self) -> anyhow::Result<Vec<Duration>> {
        let ids = self.singles("bsingle").await?;
        let mut samples = Vec::with_capacity(ids.len());
        for id in ids {
            let started = Instant::now();
            self.bare_claim(id).await?;
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
