//! Test harness for the integration tests: every test gets its own stack — tables, queues
//! and bucket under a unique prefix, provisioned on the local engines that `make test`
//! starts — so tests run in parallel without seeing each other's data.

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::types::AttributeValue;
pub mod lab;
pub mod pki;
pub mod race;
pub mod server;
pub mod standin;

use dcbackup::api::{self, App, Route};
use dcbackup::auth::{AuthConfig, Authenticator, SigningAlgorithm};
use dcbackup::config::Config;
use dcbackup::resources::Resources;
use dcbackup::runtime::Clients;
use http::StatusCode;
use lambda_http::{Body, Request};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const ISSUER: &str = "dcbackup-test";
pub const AUDIENCE: &str = "dcbackup";
/// The tests' HS256 secret; every token and secret a test uses is also grepped for in logs.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";

pub struct Stack {
    /// The prefix of every resource of this stack.
    pub prefix: String,
    pub app: App,
    /// An admin token of the admin project, sent by `call`.
    pub admin_token: String,
    pub clients: Clients,
    pub resources: Resources,
}

/// A response, decoded: the status and the JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: http::HeaderMap,
}

impl Reply {
    /// The error message of an error body.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

fn require_engines() {
    for var in [
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_S3",
    ] {
        assert!(
            std::env::var(var).is_ok_and(|v| v.starts_with("http://127.0.0.1:")),
            "{var} must point at a local engine on 127.0.0.1: run the tests with `make test`"
        );
    }
}

/// Whether the tests run against LocalStack (`make test ENGINES=localstack`, see
/// tools/emu/engines) rather than DynamoDB Local + fauxqs. Only for sizing a test's load:
/// every test checks the same on both.
pub fn on_localstack() -> bool {
    std::env::var("ENGINES").is_ok_and(|engines| engines == "localstack")
}

fn auth_config(policy_file: Option<&Path>) -> AuthConfig {
    let mut builder = AuthConfig::builder(ISSUER, AUDIENCE)
        .algorithms([SigningAlgorithm::Hs256])
        .hs256_secret(SECRET);
    if let Some(path) = policy_file {
        builder = builder.policy_file(path);
    }
    builder
        .build()
        .expect("the test auth configuration is valid")
}

/// A token for a subject with these roles in this project.
pub fn token(roles: &[&str], project: &str) -> String {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    auth_config(None)
        .mint_local_token("tester", &roles, project, Duration::from_secs(600))
        .expect("minting a test token")
}

impl Stack {
    pub async fn new() -> Stack {
        Stack::with_policy(None).await
    }

    /// A stack whose functions read a policy override file.
    pub async fn with_policy(policy_file: Option<&Path>) -> Stack {
        require_engines();
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let stack = Stack::build(&prefix, policy_file).await;
        dcbackup::provision::provision(&stack.clients, &stack.resources)
            .await
            .expect("provisioning the test stack");
        stack
    }

    /// Another process's view of an existing stack (same resources, nothing created).
    pub async fn attach(prefix: &str) -> Stack {
        require_engines();
        Stack::build(prefix, None).await
    }

    async fn build(prefix: &str, policy_file: Option<&Path>) -> Stack {
        Stack::over(prefix, policy_file, Clients::from_env().await)
    }

    fn over(prefix: &str, policy_file: Option<&Path>, clients: Clients) -> Stack {
        let resources = Resources::with_prefix(prefix).expect("test prefix is valid");
        let config = Config {
            max_body_bytes: 64 * 1024,
            ..Config::new(resources.clone())
        };
        let auth = Authenticator::new(auth_config(policy_file)).expect("test authenticator");
        Stack {
            app: App::new(&clients, &config, Arc::new(auth)),
            admin_token: token(&["admin"], "admin"),
            clients,
            resources,
            prefix: prefix.to_owned(),
        }
    }

    /// Another process's view of this stack whose DynamoDB calls pass `interceptor` first.
    pub async fn intercepted(&self, interceptor: impl Intercept + 'static) -> Stack {
        let mut clients = Clients::from_env().await;
        let dynamodb = clients
            .dynamodb
            .config()
            .to_builder()
            .interceptor(interceptor);
        clients.dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamodb.build());
        Stack::over(&self.prefix, None, clients)
    }

    /// The scheduler function's handler over this stack, as its Lambda builds it.
    pub fn scheduler(&self) -> dcbackup::scheduler::Scheduler {
        dcbackup::runtime::scheduler(&self.clients, &Config::new(self.resources.clone()))
    }

    /// Claims a subcloud directly, as `operations::start` does (its record kept in the
    /// claim), for tests that need a claim no job follows: a worker that died.
    pub async fn claim(
        &self,
        req: &dcbackup::store::ClaimRequest,
    ) -> dcbackup::store::ClaimOutcome {
        self.app.inventory.claim(req).await.expect("claim")
    }

    /// Runs a request through the route's handler, exactly as its Lambda would.
    pub async fn request(&self, route: Route, request: Request) -> Reply {
        let response = api::handle(&self.app, route, request).await;
        let (parts, body) = response.into_parts();
        let bytes: &[u8] = body.as_ref();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes).expect("every response body is JSON")
        };
        Reply {
            status: parts.status,
            body,
            headers: parts.headers,
        }
    }

    /// Calls a route on `path` with an optional JSON body, using the route's own method, as
    /// an admin.
    pub async fn call(&self, route: Route, path: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.admin_token, route, path, body).await
    }

    /// The same, with the given token in `X-Auth-Token` as dcmanager clients send it.
    pub async fn call_as(
        &self,
        token: &str,
        route: Route,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = json_request(route.method(), path, body);
        request.headers_mut().insert(
            "x-auth-token",
            token.parse().expect("a token is a valid header value"),
        );
        self.request(route, request).await
    }

    /// Sends a raw body with any method as an admin, for malformed and oversized inputs.
    pub async fn raw(&self, route: Route, method: http::Method, path: &str, body: &str) -> Reply {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-auth-token", &self.admin_token)
            .body(Body::Text(body.to_owned()))
            .expect("a valid test request");
        self.request(route, request).await
    }

    /// Registers a subcloud with the given extra fields and returns its wire object.
    pub async fn register(&self, name: &str, extra: Value) -> Value {
        let mut body = serde_json::json!({ "name": name, "software-version": "24.09" });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let reply = self
            .call(Route::SubcloudsRegister, "/v1.0/subclouds", Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "register {name}: {:?}",
            reply.body
        );
        reply.body
    }

    /// Records that a backup of `release` exists for a subcloud, centrally or on the
    /// subcloud, as a finished backup operation leaves it.
    pub async fn add_backup(&self, subcloud_id: u64, release: &str, local: bool) {
        let attribute = if local {
            "local_backups"
        } else {
            "central_backups"
        };
        self.clients
            .dynamodb
            .update_item()
            .table_name(&self.resources.subclouds_table)
            .key("id", AttributeValue::N(subcloud_id.to_string()))
            .update_expression(format!("ADD {attribute} :r"))
            .expression_attribute_values(":r", AttributeValue::Ss(vec![release.to_owned()]))
            .send()
            .await
            .expect("recording a backup");
    }

    /// The raw stored subcloud item, as the table holds it.
    pub async fn item(&self, subcloud_id: u64) -> HashMap<String, AttributeValue> {
        self.clients
            .dynamodb
            .get_item()
            .table_name(&self.resources.subclouds_table)
            .key("id", AttributeValue::N(subcloud_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .expect("reading a subcloud item")
            .item
            .unwrap_or_default()
    }

    /// Every job message on the jobs queue (received, then deleted).
    pub async fn drain_jobs(&self) -> Vec<Value> {
        let sqs = &self.clients.sqs;
        let url = sqs
            .get_queue_url()
            .queue_name(&self.resources.jobs_queue)
            .send()
            .await
            .expect("the jobs queue exists")
            .queue_url
            .unwrap_or_default();
        let mut jobs = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receiving jobs");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return jobs;
            }
            for m in messages {
                jobs.push(
                    serde_json::from_str(m.body().unwrap_or_default()).expect("a job is JSON"),
                );
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("deleting a job");
            }
        }
    }

    /// How many messages a queue of this stack holds: waiting, delayed and in flight.
    pub async fn queued(&self, queue: &str) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let sqs = &self.clients.sqs;
        let url = sqs
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .expect("the queue exists")
            .queue_url
            .unwrap_or_default();
        let out = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        out.attributes
            .unwrap_or_default()
            .values()
            .map(|v| v.parse::<usize>().expect("a count"))
            .sum()
    }

    /// Every operation record wherever it is kept: the operations table's, and those the
    /// claims on subclouds still keep (`Operation::queued`, with their `expires_at`).
    pub async fn operations(&self) -> Vec<Value> {
        let mut all = self.recorded_operations().await;
        for item in self.scan(&self.resources.subclouds_table).await {
            let sc: dcbackup::domain::Subcloud = serde_dynamo::from_item(item).expect("a subcloud");
            let (Some(op), Some(request)) =
                (dcbackup::domain::Operation::queued(&sc), &sc.op_request)
            else {
                continue;
            };
            if all.iter().all(|r| r["op_id"] != op.op_id.as_str()) {
                let mut record = serde_json::to_value(&op).expect("a record");
                record["expires_at"] = request.expires_at.into();
                all.push(record);
            }
        }
        all
    }

    /// Every operation record in the operations table.
    pub async fn recorded_operations(&self) -> Vec<Value> {
        self.scan(&self.resources.operations_table)
            .await
            .into_iter()
            .map(|item| serde_dynamo::from_item(item).expect("an operation record"))
            .collect()
    }

    /// Every item of `table`, read consistently.
    async fn scan(&self, table: &str) -> Vec<HashMap<String, AttributeValue>> {
        self.clients
            .dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .unwrap_or_else(|e| panic!("scanning {table}: {e}"))
    }

    pub async fn create_group(&self, name: &str) -> Value {
        let body = serde_json::json!({ "name": name, "description": format!("{name} sites") });
        let reply = self
            .call(Route::GroupsCreate, "/v1.0/subcloud-groups", Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "create group {name}: {:?}",
            reply.body
        );
        reply.body
    }
}

pub fn json_request(method: http::Method, path: &str, body: Option<Value>) -> Request {
    let builder = http::Request::builder().method(method).uri(path);
    match body {
        Some(v) => builder
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::Text(v.to_string())),
        None => builder.body(Body::Empty),
    }
    .expect("a valid test request")
}

/// Everything logged on this thread while the guard lives, in the functions' format
/// (`runtime::init_tracing`) at debug level.
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("log buffer").clone()).expect("logs are UTF-8")
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per test binary, a global JSON subscriber that captures what every thread
/// logs — tasks on other runtime threads and the agents' blocking threads included — and
/// returns its buffer. A binary that scans logs holds one test, so the buffer is that test's.
pub fn capture_logs() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_env_filter("debug")
                .with_current_span(true)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in a log-scanning test binary");
            captured
        })
        .clone()
}

/// Every JWT-shaped string in `text` (three base64url parts whose header starts `eyJ`,
/// i.e. `{"`): any token, whatever header or field carried it.
pub fn jwts_in(text: &str) -> Vec<&str> {
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("eyJ") {
        let candidate = &rest[at..];
        let end = candidate
            .find(|c: char| !(base64url(c) || c == '.'))
            .unwrap_or(candidate.len());
        let token = &candidate[..end];
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() >= 3 && parts[0].len() > 8 && !parts[1].is_empty() {
            found.push(token);
        }
        rest = &candidate[end.max(3)..];
    }
    found
}

/// Holds the first `TransactWriteItems` of the stack it intercepts (see
/// [`Stack::intercepted`]) until the test resumes it: a handler's write after its reads,
/// so that a test can land another request between them, where a race only lands by chance.
#[derive(Debug)]
pub struct PauseFirstWrite {
    reached: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    resume: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// The test's side of a [`PauseFirstWrite`].
pub struct Paused {
    reached: tokio::sync::oneshot::Receiver<()>,
    resume: std::sync::mpsc::Sender<()>,
}

/// A [`PauseFirstWrite`] and its [`Paused`] handle.
pub fn pause_first_write() -> (PauseFirstWrite, Paused) {
    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (resume, resume_rx) = std::sync::mpsc::channel();
    (
        PauseFirstWrite {
            reached: std::sync::Mutex::new(Some(reached_tx)),
            resume: std::sync::Mutex::new(Some(resume_rx)),
        },
        Paused { reached, resume },
    )
}

impl Paused {
    /// Waits until the intercepted stack is about to send its first write.
    pub async fn reached(&mut self) {
        (&mut self.reached)
            .await
            .expect("the intercepted request reached its write");
    }

    /// Lets the held write go.
    pub fn resume(self) {
        self.resume.send(()).expect("the held write is waiting");
    }
}

impl Intercept for PauseFirstWrite {
    fn name(&self) -> &'static str {
        "PauseFirstWrite"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context
            .input()
            .downcast_ref::<TransactWriteItemsInput>()
            .is_none()
        {
            return Ok(());
        }
        let Some(reached) = self.reached.lock().expect("not poisoned").take() else {
            return Ok(());
        };
        let resume = self.resume.lock().expect("not poisoned").take();
        let _ = reached.send(());
        // Blocks this worker thread (the interceptor is synchronous); block_in_place hands
        // its other tasks to the runtime's other workers meanwhile.
        if let Some(resume) = resume {
            tokio::task::block_in_place(|| resume.recv()).expect("the test resumes the write");
        }
        Ok(())
    }
}
