//! Every way a command can end badly, and the exit code each one means (the contract
//! scripts rely on, documented in `--help` and the README).

use serde_json::Value;

/// The request was refused by the API (a 4xx other than 401/403).
pub const EXIT_REFUSED: u8 = 1;
/// Bad usage or configuration (clap's own errors also exit 2).
pub const EXIT_USAGE: u8 = 2;
/// `--wait`: not every subcloud succeeded, or `--timeout` passed first.
pub const EXIT_PARTIAL: u8 = 3;
/// The API could not be reached or was unavailable (5xx), or refused the token (401/403).
pub const EXIT_UNREACHABLE: u8 = 4;
/// Ctrl-C while waiting (the operations go on).
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or configuration, found before any request.
    #[error("{0}")]
    Usage(String),
    /// The API's own error, with each subcloud's reason when it gave them.
    #[error("{message} (HTTP {status})")]
    Refused {
        status: u16,
        message: String,
        subclouds: Vec<Value>,
    },
    /// 401 or 403: the token is missing, bad, or lacks the route's policy rule.
    #[error("{message} (HTTP {status}){hint}")]
    Auth {
        status: u16,
        message: String,
        hint: &'static str,
    },
    /// No answer, a broken or non-JSON one, or a 5xx.
    #[error("{0}")]
    Unreachable(String),
    /// `--wait` ended with a subcloud that did not succeed, or at `--timeout`.
    #[error("{0}")]
    Partial(String),
    /// Ctrl-C during `--wait`.
    #[error("stopped waiting; the operations go on (see `dcbackup operation show <id>`)")]
    Interrupted,
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Refused { .. } => EXIT_REFUSED,
            CliError::Auth { .. } | CliError::Unreachable(_) => EXIT_UNREACHABLE,
            CliError::Partial(_) => EXIT_PARTIAL,
            CliError::Interrupted => EXIT_INTERRUPTED,
        }
    }

    /// One line for the error, then one per subcloud the API gave a reason for.
    pub fn report(&self) -> String {
        let mut text = format!("error: {self}");
        if let CliError::Refused { subclouds, .. } = self {
            for s in subclouds {
                let name = s["name"].as_str().unwrap_or("?");
                let reason = s["reason"].as_str().unwrap_or_default();
                text.push_str(&format!("\n  {name}: {reason}"));
            }
        }
        text
    }
}
