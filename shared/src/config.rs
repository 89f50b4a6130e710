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
    /// Days an operation record is kept after it is written (the operations table's TTL).
    pub operation_history_days: u64,
    /// How the worker's TLS to the agents is set up.
    pub agent_tls: AgentTls,
    /// Bytes per part of a central backup's multipart upload (S3: 5 MiB to 5 GiB; the agent
    /// raises it for data that would need more than 10,000 parts).
    pub part_size: u64,
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
    pub const DEFAULT_OPERATION_HISTORY_DAYS: u64 = 90;
    pub const DEFAULT_PART_SIZE_MIB: u64 = 16;

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
            operation_history_days: Self::DEFAULT_OPERATION_HISTORY_DAYS,
            agent_tls: AgentTls::default(),
            part_size: Self::DEFAULT_PART_SIZE_MIB << 20,
        }
    }

    /// How long a request holds its `Idempotency-Key` before a retry may take it over: the
    /// function's timeout (a live request is never overtaken) and a small margin.
    pub fn idempotency_hold_seconds(&self) -> u64 {
        self.function_timeout_seconds + Self::IDEMPOTENCY_MARGIN_SECONDS
    }

    /// Reads `DCBACKUP_*` variables; each unset or empty one takes its default. The backup
    /// bucket's name is `<prefix>-backups` unless `DCBACKUP_BACKUP_BUCKET` names it (a
    /// deployed stack's bucket name is CloudFormation's, unique across AWS).
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let prefix =
            var("DCBACKUP_RESOURCE_PREFIX").unwrap_or_else(|| Resources::DEFAULT_PREFIX.to_owned());
        let mut resources = Resources::with_prefix(&prefix)?;
        if let Some(bucket) = var("DCBACKUP_BACKUP_BUCKET") {
            resources.backup_bucket = bucket;
        }
        let positive = |name: &str, default: u64| positive(name, var(name), default);
        Ok(Config {
            resources,
            max_body_bytes: positive(
                "DCBACKUP_MAX_BODY_BYTES",
                Self::DEFAULT_MAX_BODY_BYTES as u64,
            )? as usize,
            lease_seconds: positive("DCBACKUP_LEASE_SECONDS", Self::DEFAULT_LEASE_SECONDS)?,
            claim_concurrency: positive(
                "DCBACKUP_CLAIM_CONCURRENCY",
                Self::DEFAULT_CLAIM_CONCURRENCY as u64,
            )? as usize,
            function_timeout_seconds: positive(
                "DCBACKUP_FUNCTION_TIMEOUT_SECONDS",
                Self::DEFAULT_FUNCTION_TIMEOUT_SECONDS,
            )?,
            jobs_queue_url: var("DCBACKUP_JOBS_QUEUE_URL"),
            jobs_dead_letter_queue_url: var("DCBACKUP_JOBS_DLQ_URL"),
            poll_cap: std::time::Duration::from_secs(positive(
                "DCBACKUP_POLL_MAX_SECONDS",
                Self::DEFAULT_POLL_MAX_SECONDS,
            )?),
            max_running: positive("DCBACKUP_MAX_RUNNING", Self::DEFAULT_MAX_RUNNING)?,
            operation_history_days: positive(
                "DCBACKUP_OPERATION_HISTORY_DAYS",
                Self::DEFAULT_OPERATION_HISTORY_DAYS,
            )?,
            agent_tls: agent_tls(&var)?,
            part_size: part_size(positive(
                "DCBACKUP_PART_SIZE_MIB",
                Self::DEFAULT_PART_SIZE_MIB,
            )?)?,
        })
    }
}

/// `DCBACKUP_PART_SIZE_MIB` (`mib`) in bytes, within S3's part sizes.
fn part_size(mib: u64) -> Result<u64, ConfigError> {
    use dcbackup_protocol::{MAX_PART_SIZE, MIN_PART_SIZE};
    let (min, max) = (MIN_PART_SIZE >> 20, MAX_PART_SIZE >> 20);
    if (min..=max).contains(&mib) {
        Ok(mib << 20)
    } else {
        Err(ConfigError(format!(
            "DCBACKUP_PART_SIZE_MIB must be {min} to {max} (S3's part sizes), not {mib}"
        )))
    }
}

/// The agent TLS settings: `DCBACKUP_AGENT_CA_FILE`, `DCBACKUP_AGENT_CLIENT_CERT_FILE` with
/// `DCBACKUP_AGENT_CLIENT_KEY_FILE`, and `DCBACKUP_AGENT_ALLOW_HTTP` (`true`/`false`); `var`
/// answers a set, non-empty variable.
fn agent_tls(var: &impl Fn(&str) -> Option<String>) -> Result<AgentTls, ConfigError> {
    let path = |name: &str| var(name).map(std::path::PathBuf::from);
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
    let allow_http = match var("DCBACKUP_AGENT_ALLOW_HTTP").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
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

/// A positive whole number from variable `name` (its value `value`), or its default when
/// unset.
fn positive(name: &str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    match value {
        Some(v) => v.parse().ok().filter(|n: &u64| *n > 0).ok_or_else(|| {
            ConfigError(format!("{name} must be a positive whole number, not {v:?}"))
        }),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn unset_and_empty_take_the_defaults() {
        let empty = [
            ("DCBACKUP_OPERATION_HISTORY_DAYS", ""),
            ("DCBACKUP_BACKUP_BUCKET", ""),
        ];
        for vars in [&[][..], &empty[..]] {
            let config = from(vars).expect("defaults");
            assert_eq!(
                config.operation_history_days,
                Config::DEFAULT_OPERATION_HISTORY_DAYS
            );
            assert_eq!(config.resources.backup_bucket, "dcbackup-backups");
            assert_eq!(config.max_body_bytes, Config::DEFAULT_MAX_BODY_BYTES);
        }
    }

    #[test]
    fn the_history_period_and_the_bucket_are_read() {
        let config = from(&[
            ("DCBACKUP_RESOURCE_PREFIX", "edge"),
            ("DCBACKUP_OPERATION_HISTORY_DAYS", "30"),
            ("DCBACKUP_BACKUP_BUCKET", "edge-backupbucket-1a2b3c"),
        ])
        .expect("valid");
        assert_eq!(config.operation_history_days, 30);
        assert_eq!(config.resources.backup_bucket, "edge-backupbucket-1a2b3c");
        assert_eq!(config.resources.operations_table, "edge-operations");
    }

    #[test]
    fn agent_tls_is_read_and_its_mistakes_named() {
        let config = from(&[
            ("DCBACKUP_AGENT_CA_FILE", "/etc/dcbackup/ca.pem"),
            (
                "DCBACKUP_AGENT_CLIENT_CERT_FILE",
                "/etc/dcbackup/client.pem",
            ),
            ("DCBACKUP_AGENT_CLIENT_KEY_FILE", "/etc/dcbackup/client.key"),
            ("DCBACKUP_AGENT_ALLOW_HTTP", "true"),
        ])
        .expect("valid");
        assert_eq!(
            config.agent_tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/dcbackup/ca.pem"))
        );
        assert!(config.agent_tls.client_cert.is_some());
        assert!(config.agent_tls.allow_http);
        assert!(!from(&[]).expect("defaults").agent_tls.allow_http);

        let alone = from(&[("DCBACKUP_AGENT_CLIENT_CERT_FILE", "/c.pem")]).unwrap_err();
        assert!(alone.0.contains("go together"), "{alone}");
        let bad = from(&[("DCBACKUP_AGENT_ALLOW_HTTP", "yes")]).unwrap_err();
        assert!(bad.0.contains("DCBACKUP_AGENT_ALLOW_HTTP"), "{bad}");
    }

    #[test]
    fn a_bad_number_names_the_variable() {
        for bad in ["0", "-1", "ninety"] {
            let error = from(&[("DCBACKUP_OPERATION_HISTORY_DAYS", bad)]).unwrap_err();
            assert!(
                error.0.contains("DCBACKUP_OPERATION_HISTORY_DAYS"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_part_size_is_read_in_mib_within_s3s_part_sizes() {
        assert_eq!(from(&[]).unwrap().part_size, 16 << 20);
        assert_eq!(
            from(&[("DCBACKUP_PART_SIZE_MIB", "5")]).unwrap().part_size,
            5 << 20
        );
        for bad in ["4", "5121", "0", "big"] {
            let error = from(&[("DCBACKUP_PART_SIZE_MIB", bad)]).unwrap_err();
            assert!(error.0.contains("DCBACKUP_PART_SIZE_MIB"), "{bad}: {error}");
        }
    }
}
