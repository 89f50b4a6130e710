//! Configuration read from the environment once per cold start. Resource names, limits and
//! the endpoint of every AWS service come from here (endpoints through the SDK's standard
//! `AWS_ENDPOINT_URL*` variables), so local engines, LocalStack and AWS need no code change.

use crate::resources::Resources;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone)]
pub struct Config {
    pub resources: Resources,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
}

impl Config {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

    pub fn from_env() -> Result<Config, ConfigError> {
        let prefix = env_or("DCBACKUP_RESOURCE_PREFIX", Resources::DEFAULT_PREFIX);
        let resources = Resources::with_prefix(&prefix)?;
        let max_body_bytes = match std::env::var("DCBACKUP_MAX_BODY_BYTES") {
            Ok(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                ConfigError(format!(
                    "DCBACKUP_MAX_BODY_BYTES must be a positive number of bytes, not {v:?}"
                ))
            })?,
            Err(_) => Self::DEFAULT_MAX_BODY_BYTES,
        };
        Ok(Config {
            resources,
            max_body_bytes,
        })
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}
