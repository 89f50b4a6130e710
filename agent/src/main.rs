//! `dcbackup-agent`: parses the flags, prepares the agent, prints `listening on https://ADDR`
//! (`http://` without `--cert`) as the first line on stdout (scripts and tests read the port
//! from it), then logs JSON lines and serves until SIGINT or SIGTERM.

use std::ffi::OsString;
use std::sync::Arc;

use anyhow::Context;
use dcbackup_agent::{serve, Agent, Config, USAGE};
use dcbackup_protocol::logs::{init_json_logs, Timestamps};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let config = Config::from_args(args)?;
    let agent = Arc::new(Agent::new(&config)?);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    println!("listening on {}://{address}", agent.scheme());
    init_json_logs(Timestamps::Included);
    tracing::info!(
        name = agent.name(),
        %address,
        scheme = agent.scheme(),
        client_certificates = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        data = ?config.data,
        store = %config.store.display(),
        version = env!("CARGO_PKG_VERSION"),
        "agent started"
    );
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        () = serve(listener, agent) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stopping"),
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
    }
    Ok(())
}
