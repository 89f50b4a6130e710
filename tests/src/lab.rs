//! A lab for end-to-end tests of the worker: a stack on the local engines, real agents
//! (served from the agent library on 127.0.0.1:0, each with its own data and store
//! directories), and a pump that moves jobs from the queue into the worker as Lambda's event
//! source mapping would (partial batch failures honoured).

use crate::Stack;
use dcbackup::agent_client::AgentTls;
use dcbackup::config::Config;
use dcbackup::jobs;
use dcbackup::runtime;
use dcbackup::worker::Worker;
use dcbackup_agent::{serve, Agent, TlsFiles};
use dcbackup_protocol::Secret;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key agents and worker share in the lab.
pub const AGENT_SECRET: &str = "lab agent secret, at least 32 bytes long";

pub struct LabAgent {
    pub name: String,
    pub url: String,
    /// The data dir the agent backs up and restores.
    pub data: PathBuf,
    pub store: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for LabAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Lab {
    pub stack: Stack,
    pub worker: Worker,
    pub dir: PathBuf,
    /// Every job message the pump delivered, as sent.
    pub delivered: Mutex<Vec<String>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a lab agent is served and which keys it accepts.
pub struct AgentSetup {
    /// HTTPS (`--cert`, `--key`, `--client-ca`); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// The key the agent accepts tokens signed with (`--secret-file`).
    pub secret: String,
    /// The key before a rotation, also accepted (`--previous-secret-file`).
    pub previous_secret: Option<String>,
}

impl Default for AgentSetup {
    fn default() -> Self {
        AgentSetup {
            tls: None,
            secret: AGENT_SECRET.to_owned(),
            previous_secret: None,
        }
    }
}

impl Lab {
    pub async fn new() -> Lab {
        Lab::with_worker(AgentTls::default(), AGENT_SECRET).await
    }

    /// A lab whose worker reaches agents with `tls` and signs tokens with `secret`.
    pub async fn with_worker(tls: AgentTls, secret: &str) -> Lab {
        let stack = Stack::new().await;
        let config = Config {
            poll_cap: Duration::from_secs(1),
            agent_tls: tls,
            ..Config::new(stack.resources.clone())
        };
        let secret = Secret::new(secret.as_bytes().to_vec()).expect("lab secret");
        let worker = runtime::worker(&stack.clients, &config, secret).expect("lab worker");
        let dir = std::env::temp_dir().join(format!("dcbackup-lab-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("lab dir");
        Lab {
            stack,
            worker,
            dir: dir.canonicalize().expect("canonical lab dir"),
            delivered: Mutex::new(Vec::new()),
        }
    }

    /// A running agent for subcloud `name`, with a data dir of a few files.
    pub async fn agent(&self, name: &str) -> LabAgent {
        self.agent_with(name, AgentSetup::default()).await
    }

    /// A running agent for subcloud `name` set up as `setup` says; its `url` has the scheme
    /// it serves and the address 127.0.0.1.
    pub async fn agent_with(&self, name: &str, setup: AgentSetup) -> LabAgent {
        let root = self.dir.join(name);
        let data = root.join("etc");
        let store = root.join("store");
        std::fs::create_dir_all(data.join("nested/deeper")).expect("data dir");
        std::fs::create_dir_all(&store).expect("store dir");
        std::fs::write(data.join("platform.conf"), format!("name = {name}\n")).expect("file");
        std::fs::write(data.join("empty"), b"").expect("file");
        std::fs::write(
            data.join("nested/deeper/blob.bin"),
            (0..=255u8).cycle().take(70_000).collect::<Vec<_>>(),
        )
        .expect("file");
        let secret_file = root.join("secret");
        std::fs::write(&secret_file, &setup.secret).expect("secret file");
        let previous_secret_file = setup.previous_secret.map(|previous| {
            let file = root.join("previous-secret");
            std::fs::write(&file, previous).expect("secret file");
            file
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("agent port");
        let address = listener.local_addr().expect("agent address");
        let config = dcbackup_agent::Config {
            name: name.to_owned(),
            listen: address,
            data: vec![data.clone()],
            store: store.clone(),
            secret_file,
            previous_secret_file,
            tls: setup.tls,
        };
        let agent = Arc::new(Agent::new(&config).expect("agent starts"));
        let scheme = agent.scheme();
        let server = tokio::spawn(serve(listener, agent));
        LabAgent {
            name: name.to_owned(),
            url: format!("{scheme}://{address}"),
            data,
            store,
            server,
        }
    }

    /// Registers a managed, online subcloud whose agent listens at `url`.
    pub async fn register(&self, name: &str, url: &str) -> u64 {
        let body = json!({"management-state": "managed", "availability-status": "online", "agent-url": url});
        self.stack.register(name, body).await["id"]
            .as_u64()
            .expect("id")
    }

    /// Delivers what is on the jobs queue to the worker once; returns how many messages.
    pub async fn pump_once(&self) -> usize {
        let bodies = pump_once(&self.worker, &self.stack.clients.sqs).await;
        let count = bodies.len();
        self.delivered.lock().unwrap().extend(bodies);
        count
    }

    /// The multipart upload recorded on operation `op_id`.
    pub async fn upload_id(&self, op_id: &str) -> String {
        let op = self
            .stack
            .operations()
            .await
            .into_iter()
            .find(|op| op["op_id"] == op_id)
            .expect("the operation's record");
        op["upload_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no upload recorded on {op}"))
            .to_owned()
    }

    /// Whether the multipart upload `upload_id` of `key` still exists, asked as S3 is asked
    /// (fauxqs has no ListParts): aborting it answers NoSuchUpload when it does not. An
    /// upload that did exist is gone afterwards.
    pub async fn upload_existed(&self, key: &str, upload_id: &str) -> bool {
        let aborted = self
            .stack
            .clients
            .s3
            .abort_multipart_upload()
            .bucket(&self.stack.resources.backup_bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => true,
            Err(e) => {
                let e = e.into_service_error();
                assert!(e.is_no_such_upload(), "aborting {key}: {e:?}");
                false
            }
        }
    }

    /// Pumps until the subcloud's slot is free again (its operation ended); returns it.
    pub async fn run_to_end(&self, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.pump_once().await;
            let shown = self
                .stack
                .call(
                    dcbackup::api::Route::SubcloudsShow,
                    &format!("/v1.0/subclouds/{name}"),
                    None,
                )
                .await;
            if shown.body["operation"].is_null() {
                return shown.body;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not finish: {}",
                shown.body
            );
        }
    }
}

/// Moves up to ten jobs from the queue into the worker, as Lambda's event source mapping
/// does: the messages the worker did not report as failures are deleted. Returns the bodies.
pub async fn pump_once(worker: &Worker, sqs: &aws_sdk_sqs::Client) -> Vec<String> {
    let url = worker.jobs.url().await.expect("jobs queue").to_owned();
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receiving jobs");
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Vec::new();
    }
    let event = jobs::sqs_event(
        &messages,
        "arn:aws:sqs:us-east-1:000000000000:jobs",
        "us-east-1",
    );
    let response = worker.handle_batch(event).await;
    for m in jobs::handled(&messages, &response).expect("the worker names only its messages") {
        sqs.delete_message()
            .queue_url(&url)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .expect("deleting a handled job");
    }
    messages.into_iter().filter_map(|m| m.body).collect()
}

/// A worker for a stack's resources, as the lab and the worker-pump process build it.
pub fn lab_worker(stack: &Stack, lease_seconds: u64) -> Worker {
    let config = Config {
        poll_cap: Duration::from_secs(1),
        lease_seconds,
        ..Config::new(stack.resources.clone())
    };
    let secret = Secret::new(AGENT_SECRET.as_bytes().to_vec()).expect("lab secret");
    runtime::worker(&stack.clients, &config, secret).expect("lab worker")
}

/// The SHA-256 of every file under `dir`, by relative path: equal maps, identical trees.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let relative = path.strip_prefix(base).unwrap().display().to_string();
            if path.is_dir() {
                out.insert(format!("{relative}/"), String::new());
                walk(base, &path, out);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
                let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                out.insert(relative, hex);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
