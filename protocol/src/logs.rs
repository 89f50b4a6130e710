//! The log format every dcbackup process writes: JSON, one object a line, the current span's
//! fields (a request id, a job's `op_id`) on each line, level from `RUST_LOG` (default
//! `info`). The Lambda functions and the agent set it up here so their lines read alike.

/// Whether each line carries its own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// A process whose lines are stamped on arrival (CloudWatch Logs for a Lambda function).
    Omitted,
    /// A process logging to its own stdout (the agent).
    Included,
}

/// Installs the global subscriber; call once, at start.
pub fn init_json_logs(timestamps: Timestamps) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false);
    match timestamps {
        Timestamps::Omitted => logs.without_time().init(),
        Timestamps::Included => logs.init(),
    }
}
