//! What a function's `main` calls: structured JSON logs, AWS clients from the environment
//! (no network I/O at start), and the Lambda runtime loop around the shared handler.

use crate::agent_client::{AgentClient, TlsSetupError};
use crate::api::{self, App, Route};
use crate::auth::{AuthConfig, Authenticator};
use crate::central::CentralStore;
use crate::config::Config;
use crate::jobs::JobQueue;
use crate::scheduler::Scheduler;
use crate::store::Store;
use crate::sweeper::Sweeper;
use crate::worker::Worker;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, RuntimeComponents, RuntimeComponentsBuilder, RuntimePlugin,
};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use dcbackup_protocol::logs::{init_json_logs, Timestamps};
use lambda_http::{service_fn, Error, Request};
use std::sync::Arc;

/// Runs a function's `main` (one of the `serve_*` below) on a single-threaded tokio runtime
/// until it returns. A Lambda function takes one event at a time on a share of one vCPU (a
/// 256 MB function gets about a seventh), so worker threads buy it nothing, and starting them
/// made the release build's start to the first `/next` ~0.8 ms slower here (issue #17, P3:
/// medians of 40 starts, 4.3-4.7 ms against 3.6-4.0). Errors: the runtime could not be built,
/// or `main`'s own.
pub fn start(main: impl std::future::Future<Output = Result<(), Error>>) -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(main)
}

/// Structured JSON logs, one object a line, without the time CloudWatch Logs stamps each
/// line with; level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    init_json_logs(Timestamps::Omitted);
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
    /// The three clients over [`sdk_config`].
    pub async fn from_env() -> Clients {
        Clients::from_config(&sdk_config().await)
    }

    /// The three clients over `shared`, S3 path-style when `DCBACKUP_S3_PATH_STYLE=true`.
    pub fn from_config(shared: &aws_config::SdkConfig) -> Clients {
        // Emulators serve buckets by path, not by virtual host.
        let path_style = std::env::var("DCBACKUP_S3_PATH_STYLE").is_ok_and(|v| v == "true");
        let s3 = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(path_style)
            .build();
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(shared),
            sqs: aws_sdk_sqs::Client::new(shared),
            s3: aws_sdk_s3::Client::from_conf(s3),
        }
    }
}

/// The SDK configuration every client of a function is built from: the standard environment,
/// with one [`DeferredTrustStore`] HTTPS client for all of them.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(http) = DeferredTrustStore::sdk_default() {
        loader = loader.http_client(http);
    }
    loader.load().await
}

/// The SDK's default HTTPS client (hyper, rustls on aws-lc, the system's root certificates,
/// proxies from the environment) with its trust store read when the first connection is made
/// instead of when an SDK client is built. Left to itself the SDK gives each service client its
/// own HTTPS client and, to check it, builds a connector for each at once, reading and parsing
/// every system root certificate each time: most of a cold start's instructions (issue #17).
/// Shared by every client and deferred, the roots are read once, by the first request. What is
/// trusted does not change: the same roots, the same verifier.
#[derive(Debug)]
pub struct DeferredTrustStore(SharedHttpClient);

impl DeferredTrustStore {
    /// Wraps the HTTPS client the SDK would build by default; `None` if it would build none.
    pub fn sdk_default() -> Option<DeferredTrustStore> {
        let plugin = aws_smithy_runtime::client::defaults::default_http_client_plugin_v2(
            BehaviorVersion::latest(),
        )?;
        let components = plugin.runtime_components(&RuntimeComponentsBuilder::new("dcbackup"));
        components.http_client().map(DeferredTrustStore)
    }

    /// Wraps `client`, whose connectors are built on first use.
    pub fn new(client: SharedHttpClient) -> DeferredTrustStore {
        DeferredTrustStore(client)
    }
}

impl HttpClient for DeferredTrustStore {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    // `validate_base_client_config` is deliberately the trait's no-op: the wrapped client
    // builds a connector there, root certificates included, for every SDK client.

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

impl App {
    pub fn new(clients: &Clients, config: &Config, auth: Arc<Authenticator>) -> App {
        App {
            auth,
            inventory: Store::new(clients.dynamodb.clone(), config.resources.clone())
                .with_operation_history_days(config.operation_history_days),
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
    let shared = sdk_config().await;
    let clients = Clients::from_config(&shared);
    let worker = Arc::new(worker(&clients, &config, agent_secret(&shared).await?)?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| {
            let worker = Arc::clone(&worker);
            async move { Ok::<_, std::convert::Infallible>(worker.handle_batch(event.payload).await) }
        },
    ))
    .await
}

/// Names the Secrets Manager secret holding the agents' token key (its ARN or name).
pub const AGENT_SECRET_ARN_VARIABLE: &str = "DCBACKUP_AGENT_SECRET_ARN";

/// The key the worker signs agent tokens with, read once per cold start: from the Secrets
/// Manager secret `DCBACKUP_AGENT_SECRET_ARN` names when it is set (on AWS), else from
/// `DCBACKUP_AGENT_SECRET` (local use). Secrets Manager is called through `shared`, the
/// function's own [`sdk_config`], so its HTTPS client and credentials are the ones the other
/// clients already have.
pub async fn agent_secret(
    shared: &aws_config::SdkConfig,
) -> Result<dcbackup_protocol::Secret, crate::config::ConfigError> {
    match std::env::var(AGENT_SECRET_ARN_VARIABLE) {
        Ok(arn) if !arn.is_empty() => {
            fetch_agent_secret(&aws_sdk_secretsmanager::Client::new(shared), &arn).await
        }
        _ => agent_secret_from_env(),
    }
}

/// The agents' key from the Secrets Manager secret `arn`: its current version's
/// `SecretString` (or `SecretBinary`), at least 32 bytes. The secret's value is never part of
/// an error.
pub async fn fetch_agent_secret(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<dcbackup_protocol::Secret, crate::config::ConfigError> {
    let fail = |why: String| {
        crate::config::ConfigError(format!(
            "the agent key in Secrets Manager ({AGENT_SECRET_ARN_VARIABLE}={arn}): {why}"
        ))
    };
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| fail(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let bytes = match (output.secret_string(), output.secret_binary()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(binary)) => binary.as_ref().to_vec(),
        (None, None) => return Err(fail("the secret has no value".into())),
    };
    dcbackup_protocol::Secret::new(bytes).map_err(|e| fail(e.to_string()))
}

/// The key the worker signs agent tokens with (`DCBACKUP_AGENT_SECRET`, at least 32 bytes).
pub fn agent_secret_from_env() -> Result<dcbackup_protocol::Secret, crate::config::ConfigError> {
    let value = std::env::var("DCBACKUP_AGENT_SECRET").map_err(|_| {
        crate::config::ConfigError(
            "DCBACKUP_AGENT_SECRET (the agents' token key) is not set".into(),
        )
    })?;
    dcbackup_protocol::Secret::new(value.into_bytes())
        .map_err(|e| crate::config::ConfigError(format!("DCBACKUP_AGENT_SECRET: {e}")))
}

/// The worker over these clients and settings; fails if the agent TLS files are unusable.
pub fn worker(
    clients: &Clients,
    config: &Config,
    agent_secret: dcbackup_protocol::Secret,
) -> Result<Worker, TlsSetupError> {
    Ok(Worker {
        inventory: Store::new(clients.dynamodb.clone(), config.resources.clone())
            .with_operation_history_days(config.operation_history_days),
        jobs: JobQueue::new(
            clients.sqs.clone(),
            config.resources.jobs_queue.clone(),
            config.jobs_queue_url.clone(),
        ),
        central: CentralStore::new(clients.s3.clone(), config.resources.backup_bucket.clone()),
        agents: AgentClient::new(agent_secret, &config.agent_tls)?,
        lease_seconds: config.lease_seconds,
        poll_cap: config.poll_cap,
        max_running: config.max_running,
        part_size: config.part_size,
        part_urls_ahead: crate::worker::PART_URLS_AHEAD,
    })
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
        inventory: Store::new(clients.dynamodb.clone(), config.resources.clone())
            .with_operation_history_days(config.operation_history_days),
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
            // Boxed: a sweep's future is too deep to nest in the runtime's for the compiler.
            async move { Box::pin(sweeper.sweep()).await.map_err(Error::from) }
        },
    ))
    .await
}

/// The sweeper over these clients and settings.
pub fn sweeper(clients: &Clients, config: &Config) -> Sweeper {
    Sweeper {
        inventory: Store::new(clients.dynamodb.clone(), config.resources.clone())
            .with_operation_history_days(config.operation_history_days),
        dead_letters: JobQueue::new(
            clients.sqs.clone(),
            config.resources.jobs_dead_letter_queue.clone(),
            config.jobs_dead_letter_queue_url.clone(),
        ),
        central: CentralStore::new(clients.s3.clone(), config.resources.backup_bucket.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_secretsmanager::Client;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    const ARN: &str =
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dcbackup-agent-key-AbCdEf";
    const KEY: &str = "the agents' key from Secrets Manager, 32+ bytes";

    /// A stand-in for Secrets Manager's `GetSecretValue` (it has no local engine): answers
    /// every request with `status` and the awsJson1.1 `body`, after checking the request is a
    /// `GetSecretValue` of [`ARN`] (400 otherwise). Returns a client for it and the request
    /// count. An SDK test-util mock would do, but its features would change the workspace's
    /// feature set in tests and make `make run` rebuild every AWS crate.
    async fn secrets_manager(
        status: u16,
        body: serde_json::Value,
    ) -> (Client, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (calls, body) = (Arc::clone(&counted), body.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        let (mut target, mut length) = (String::new(), 0);
                        loop {
                            let mut line = String::new();
                            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':') {
                                match name.to_ascii_lowercase().as_str() {
                                    "x-amz-target" => target = value.trim().to_owned(),
                                    "content-length" => length = value.trim().parse().unwrap(),
                                    _ => {}
                                }
                            }
                        }
                        let mut request = vec![0; length];
                        stream.read_exact(&mut request).await.unwrap();
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let request: serde_json::Value = serde_json::from_slice(&request).unwrap();
                        let (status, body) = if target == "secretsmanager.GetSecretValue"
                            && request["SecretId"] == ARN
                        {
                            (status, body.to_string())
                        } else {
                            (400, format!("unexpected request {target} {request}"))
                        };
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
                             content-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(url)
            .build();
        (Client::from_conf(config), calls)
    }

    /// An HTTP client that counts what the SDK asks of it; its connector refuses every request.
    #[derive(Debug, Default, Clone)]
    struct Counting {
        validated: Arc<std::sync::atomic::AtomicUsize>,
        connectors: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl HttpClient for Counting {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            self.connectors
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            SharedHttpConnector::new(Refusing)
        }

        fn validate_base_client_config(
            &self,
            _: &RuntimeComponentsBuilder,
            _: &aws_sdk_dynamodb::config::ConfigBag,
        ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
            self.validated
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Refusing;

    impl aws_smithy_runtime_api::client::http::HttpConnector for Refusing {
        fn call(
            &self,
            _: aws_sdk_dynamodb::config::http::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Err(
                aws_smithy_runtime_api::client::result::ConnectorError::other(
                    "no network in this test".into(),
                    None,
                ),
            ))
        }
    }

    fn dynamodb(http: impl HttpClient + 'static) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .http_client(http)
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    #[tokio::test]
    async fn sdk_clients_build_no_connector_until_their_first_request() {
        use std::sync::atomic::Ordering::SeqCst;
        // The SDK alone checks its HTTP client, building a connector, as each client is built.
        let eager = Counting::default();
        let _client = dynamodb(eager.clone());
        assert_eq!(eager.validated.load(SeqCst), 1);

        let counting = Counting::default();
        let client = dynamodb(DeferredTrustStore::new(SharedHttpClient::new(
            counting.clone(),
        )));
        let _second = dynamodb(DeferredTrustStore::new(SharedHttpClient::new(
            counting.clone(),
        )));
        assert_eq!(counting.validated.load(SeqCst), 0);
        assert_eq!(counting.connectors.load(SeqCst), 0);
        client.list_tables().send().await.expect_err("refused");
        assert_eq!(counting.validated.load(SeqCst), 0);
        assert!(counting.connectors.load(SeqCst) >= 1);
    }

    #[test]
    fn the_deferred_client_wraps_the_sdks_default() {
        let deferred = DeferredTrustStore::sdk_default().expect("the SDK's HTTPS client");
        assert!(deferred.connector_metadata().is_some());
    }

    #[tokio::test]
    async fn the_agent_key_comes_from_the_named_secret() {
        let (client, calls) =
            secrets_manager(200, serde_json::json!({"ARN": ARN, "SecretString": KEY})).await;
        let secret = fetch_agent_secret(&client, ARN).await.expect("the key");
        assert_eq!(secret.as_bytes(), KEY.as_bytes());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);

        let binary = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, KEY);
        let (client, _) =
            secrets_manager(200, serde_json::json!({"ARN": ARN, "SecretBinary": binary})).await;
        let secret = fetch_agent_secret(&client, ARN)
            .await
            .expect("the binary key");
        assert_eq!(secret.as_bytes(), KEY.as_bytes());
    }

    #[tokio::test]
    async fn a_missing_short_or_empty_secret_is_a_clear_error_without_its_value() {
        let (client, _) = secrets_manager(
            400,
            serde_json::json!({
                "__type": "ResourceNotFoundException",
                "message": "Secrets Manager can't find the specified secret."
            }),
        )
        .await;
        let error = fetch_agent_secret(&client, ARN).await.expect_err("missing");
        assert!(
            error.to_string().contains(ARN) && error.to_string().contains("can't find"),
            "{error}"
        );

        let (client, _) = secrets_manager(
            200,
            serde_json::json!({"ARN": ARN, "SecretString": "too short"}),
        )
        .await;
        let error = fetch_agent_secret(&client, ARN).await.expect_err("short");
        assert!(error.to_string().contains("at least 32"), "{error}");
        assert!(!error.to_string().contains("too short"), "{error}");

        let (client, _) = secrets_manager(200, serde_json::json!({"ARN": ARN})).await;
        let error = fetch_agent_secret(&client, ARN).await.expect_err("empty");
        assert!(error.to_string().contains("has no value"), "{error}");
    }
}
