//! Configuration read from the environment once per cold start. Resource names, limits and
//! the endpoint of every AWS service come from here (endpoints through the SDK's standard
//! `AWS_ENDPOINT_URL*` variables), so local engines, LocalStack and AWS need no code change.

use crate::agent_client::AgentTls;
use crate::resources::Resources;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone)]
pub struct Config {
    pub resources: Resources,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// How long a claimed slot is held before the sweeper may recover it (workers extend it).
    pub lease_seconds: u64,
    /// How many members of a group are claimed at once.
    pub claim_concurrency: usize,
    /// The API functions' own timeout (infra/template.yaml, Globals `Timeout`): no request
    /// runs longer, so an `Idempotency-Key` held by a request that died is free again soon
    /// after (`idempotency_hold_seconds`).
    pub function_timeout_seconds: u64,
    /// The jobs queue's URL as deployed; looked up by name on first use when absent.
    pub jobs_queue_url: Option<String>,
    /// The dead-letter queue's URL as deployed; looked up by name on first use when absent.
    pub jobs_dead_letter_queue_url: Option<String>,
    /// The longest pause between two polls of an agent job.
    pub poll_cap: std::time::Duration,
    /// How many operations may run on agents at once, system-wide (groups have their own
    /// `max_parallel_subclouds`).
    pub max_running: u64,
    /// How the worker's TLS to the agents is set up.
    pub agent_tls: AgentTls,
}

impl Config {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
    pub const DEFAULT_LEASE_SECONDS: u64 = 900;
    pub const DEFAULT_CLAIM_CONCURRENCY: usize = 32;
    /// infra/template.yaml's Globals `Timeout`.
    pub const DEFAULT_FUNCTION_TIMEOUT_SECONDS: u64 = 10;
    /// How long after the function's timeout a key stays held: covers the clock skew between
    /// the instance that took it and the one retrying.
    pub const IDEMPOTENCY_MARGIN_SECONDS: u64 = 5;
    pub const DEFAULT_POLL_MAX_SECONDS: u64 = 30;
    pub const DEFAULT_MAX_RUNNING: u64 = 500;

    /// The defaults for everything but the resources.
    pub fn new(resources: Resources) -> Config {
        Config {
            resources,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            lease_seconds: Self::DEFAULT_LEASE_SECONDS,
            claim_concurrency: Self::DEFAULT_CLAIM_CONCURRENCY,
            function_timeout_seconds: Self::DEFAULT_FUNCTION_TIMEOUT_SECONDS,
            jobs_queue_url: None,
            jobs_dead_letter_queue_url: None,
            poll_cap: std::time::Duration::from_secs(Self::DEFAULT_POLL_MAX_SECONDS),
            max_running: Self::DEFAULT_MAX_RUNNING,
            agent_tls: AgentTls::default(),
        }
    }

    /// How long a request holds its `Idempotency-Key` before a retry may take it over: the
    /// function's timeout (a live request is never overtaken) and a small margin.
    pub fn idempotency_hold_seconds(&self) -> u64 {
        self.function_timeout_seconds + Self::IDEMPOTENCY_MARGIN_SECONDS
    }

    pub fn from_env() -> Result<Config, ConfigError> {
        let prefix = env_or("DCBACKUP_RESOURCE_PREFIX", Resources::DEFAULT_PREFIX);
        Ok(Config {
            resources: Resources::with_prefix(&prefix)?,
            max_body_bytes: positive("DCBACKUP_MAX_BODY_BYTES", Self::DEFAULT_MAX_BODY_BYTES)?,
            lease_seconds: positive("DCBACKUP_LEASE_SECONDS", Self::DEFAULT_LEASE_SECONDS)?,
            claim_concurrency: positive(
                "DCBACKUP_CLAIM_CONCURRENCY",
                Self::DEFAULT_CLAIM_CONCURRENCY,
            )?,
            function_timeout_seconds: positive(
                "DCBACKUP_FUNCTION_TIMEOUT_SECONDS",
                Self::DEFAULT_FUNCTION_TIMEOUT_SECONDS,
            )?,
            jobs_queue_url: std::env::var("DCBACKUP_JOBS_QUEUE_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            jobs_dead_letter_queue_url: std::env::var("DCBACKUP_JOBS_DLQ_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            poll_cap: std::time::Duration::from_secs(positive(
                "DCBACKUP_POLL_MAX_SECONDS",
                Self::DEFAULT_POLL_MAX_SECONDS,
            )?),
            max_running: positive("DCBACKUP_MAX_RUNNING", Self::DEFAULT_MAX_RUNNING)?,
            agent_tls: agent_tls()?,
        })
    }
}

/// The agent TLS settings: `DCBACKUP_AGENT_CA_FILE`, `DCBACKUP_AGENT_CLIENT_CERT_FILE` with
/// `DCBACKUP_AGENT_CLIENT_KEY_FILE`, and `DCBACKUP_AGENT_ALLOW_HTTP` (`true`/`false`).
fn agent_tls() -> Result<AgentTls, ConfigError> {
    let path = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    let client_cert =
        match (
            path("DCBACKUP_AGENT_CLIENT_CERT_FILE"),
            path("DCBACKUP_AGENT_CLIENT_KEY_FILE"),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(ConfigError(
                "DCBACKUP_AGENT_CLIENT_CERT_FILE and DCBACKUP_AGENT_CLIENT_KEY_FILE go together"
                    .into(),
            )),
        };
    let allow_http = match std::env::var("DCBACKUP_AGENT_ALLOW_HTTP").as_deref() {
        Err(_) | Ok("") | Ok("false") => false,
        Ok("true") => true,
        Ok(other) => {
            return Err(ConfigError(format!(
                "DCBACKUP_AGENT_ALLOW_HTTP must be true or false, not {other:?}"
            )))
        }
    };
    Ok(AgentTls {
        ca_file: path("DCBACKUP_AGENT_CA_FILE"),
        client_cert,
        allow_http,
    })
}

/// A positive number from the environment, or its default when unset.
fn positive<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            v.parse()
                .ok()
                .filter(|n: &T| *n > T::default())
                .ok_or_else(|| {
                    ConfigError(format!("{name} must be a positive whole number, not {v:?}"))
                })
        }
        _ => Ok(default),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}
