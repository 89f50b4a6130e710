//! What a function's `main` calls: structured JSON logs, AWS clients from the environment
//! (no network I/O at start), and the Lambda runtime loop around the shared handler.

use crate::agent_client::AgentClient;
use crate::api::{self, App, Route};
use crate::auth::{AuthConfig, Authenticator};
use crate::central::CentralStore;
use crate::config::Config;
use crate::jobs::JobQueue;
use crate::scheduler::Scheduler;
use crate::store::Inventory;
use crate::sweeper::Sweeper;
use crate::worker::Worker;
use lambda_http::{service_fn, Error, Request};
use std::sync::Arc;

/// Structured JSON logs, one object a line; level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .init();
}

/// The AWS clients every function and tool shares, from the SDK's standard environment
/// (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL*`).
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Clients {
    pub async fn from_env() -> Clients {
        let shared = aws_config::load_from_env().await;
        // Emulators serve buckets by path, not by virtual host.
        let path_style = std::env::var("DCBACKUP_S3_PATH_STYLE").is_ok_and(|v| v == "true");
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .build();
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            sqs: aws_sdk_sqs::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3),
        }
    }
}

impl App {
    pub fn new(clients: &Clients, config: &Config, auth: Arc<Authenticator>) -> App {
        App {
            auth,
            inventory: Inventory::new(clients.dynamodb.clone(), config.resources.clone()),
            jobs: JobQueue::new(
                clients.sqs.clone(),
                config.resources.jobs_queue.clone(),
                config.jobs_queue_url.clone(),
            ),
            max_body_bytes: config.max_body_bytes,
            lease_seconds: config.lease_seconds,
            claim_concurrency: config.claim_concurrency,
            idempotency_hold_seconds: config.idempotency_hold_seconds(),
        }
    }
}

/// Runs one HTTP route as a Lambda function.
pub async fn serve_http(route: Route) -> Result<(), Error> {
    init_tracing();
    let config = Config::from_env()?;
    let auth = Arc::new(Authenticator::new(AuthConfig::from_env()?)?);
    let app = Arc::new(App::new(&Clients::from_env().await, &config, auth));
    lambda_http::run(service_fn(move |req: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, std::convert::Infallible>(api::handle(&app, route, req).await) }
    }))
    .await
}

/// Runs the `$default` route (`api::default_route`) as a Lambda function: no clients, no
/// configuration.
pub async fn serve_default_route() -> Result<(), Error> {
    init_tracing();
    lambda_http::run(service_fn(|req: Request| async move {
        Ok::<_, std::convert::Infallible>(api::default_route(&req))
    }))
    .await
}

/// Runs the worker as a Lambda function on the jobs queue (partial batch responses on).
pub async fn serve_worker() -> Result<(), Error> {
    init_tracing();
    let config = Config::from_env()?;
    let clients = Clients::from_env().await;
    let worker = Arc::new(worker(&clients, &config, agent_secret_from_env()?));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let worker = Arc::clone(&worker);
            async move { Ok::<_, std::convert::Infallible>(worker.handle_batch(event.payload).await) }
        },
    ))
    .await
}

/// The key the worker signs agent tokens with (`DCBACKUP_AGENT_SECRET`, at least 32 bytes).
pub fn agent_secret_from_env() -> Result<dcbackup_agent::Secret, crate::config::ConfigError> {
    let value = std::env::var("DCBACKUP_AGENT_SECRET").map_err(|_| {
        crate::config::ConfigError(
            "DCBACKUP_AGENT_SECRET (the agents' token key) is not set".into(),
        )
    })?;
    dcbackup_agent::Secret::new(value.into_bytes())
        .map_err(|e| crate::config::ConfigError(format!("DCBACKUP_AGENT_SECRET: {e}")))
}

/// The worker over these clients and settings.
pub fn worker(clients: &Clients, config: &Config, agent_secret: dcbackup_agent::Secret) -> Worker {
    Worker {
        inventory: Inventory::new(clients.dynamodb.clone(), config.resources.clone()),
        jobs: JobQueue::new(
            clients.sqs.clone(),
            config.resources.jobs_queue.clone(),
            config.jobs_queue_url.clone(),
        ),
        central: CentralStore::new(clients.s3.clone(), config.resources.backup_bucket.clone()),
        agents: AgentClient::new(agent_secret),
        lease_seconds: config.lease_seconds,
        poll_cap: config.poll_cap,
        max_running: config.max_running,
    }
}

/// Runs the scheduler as a Lambda function on EventBridge events (SPEC §5).
pub async fn serve_scheduler() -> Result<(), Error> {
    init_tracing();
    let config = Config::from_env()?;
    let clients = Clients::from_env().await;
    let scheduler = Arc::new(scheduler(&clients, &config));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let scheduler = Arc::clone(&scheduler);
            // A failed run is retried by EventBridge and by the next minute's run.
            async move { scheduler.handle(&event.payload).await.map_err(Error::from) }
        },
    ))
    .await
}

/// The scheduler over these clients and settings.
pub fn scheduler(clients: &Clients, config: &Config) -> Scheduler {
    Scheduler {
        inventory: Inventory::new(clients.dynamodb.clone(), config.resources.clone()),
        jobs: JobQueue::new(
            clients.sqs.clone(),
            config.resources.jobs_queue.clone(),
            config.jobs_queue_url.clone(),
        ),
        lease_seconds: config.lease_seconds,
        claim_concurrency: config.claim_concurrency,
    }
}

/// Runs the sweeper as a scheduled Lambda function (any event triggers one sweep).
pub async fn serve_sweeper() -> Result<(), Error> {
    init_tracing();
    let config = Config::from_env()?;
    let clients = Clients::from_env().await;
    let sweeper = Arc::new(sweeper(&clients, &config));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let sweeper = Arc::clone(&sweeper);
            // A failed sweep is retried by the next scheduled run; the error is logged.
            async move { sweeper.sweep().await.map_err(Error::from) }
        },
    ))
    .await
}

/// The sweeper over these clients and settings.
pub fn sweeper(clients: &Clients, config: &Config) -> Sweeper {
    Sweeper {
        inventory: Inventory::new(clients.dynamodb.clone(), config.resources.clone()),
        dead_letters: JobQueue::new(
            clients.sqs.clone(),
            config.resources.jobs_dead_letter_queue.clone(),
            config.jobs_dead_letter_queue_url.clone(),
        ),
    }
}
