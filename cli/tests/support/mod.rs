//! What the CLI tests share: a lab (its own stack on the local engines, real agents, the
//! worker) whose API handlers are served over HTTP on 127.0.0.1, and the real `dcbackup`
//! binary run against it.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use dcbackup_tests::lab::Lab;
use dcbackup_tests::server::{serve, Server};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Env {
    pub lab: Arc<Lab>,
    pub server: Server,
    /// An empty XDG config home, so no user's profile file is read.
    pub config_home: PathBuf,
}

/// A finished run: exit code, stdout and stderr as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out
                .status
                .code()
                .expect("dcbackup exited, not killed by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code, showing the run when it differs.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}

impl Env {
    pub async fn new() -> Env {
        let lab = Arc::new(Lab::new().await);
        let server = serve(Arc::clone(&lab), |lab: &Lab| &lab.stack.app).await;
        let config_home = lab.dir.join("xdg-config");
        std::fs::create_dir_all(&config_home).expect("config home");
        Env {
            lab,
            server,
            config_home,
        }
    }

    /// `dcbackup` with the URL and an admin token in its environment, nothing else of ours.
    pub fn command<I, S>(&self, args: I) -> tokio::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_dcbackup"));
        cmd.args(args)
            .env_remove("OS_AUTH_TOKEN")
            .env_remove("DCBACKUP_TOKEN_FILE")
            .env_remove("DCBACKUP_PROFILE")
            .env_remove("DCBACKUP_CONFIG")
            .env_remove("DCBACKUP_CA_BUNDLE")
            .env("XDG_CONFIG_HOME", &self.config_home)
            .env("DCBACKUP_URL", self.server.url())
            .env("DCBACKUP_TOKEN", &self.lab.stack.admin_token)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `dcbackup args` to its end.
    pub async fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.finish(self.command(args)).await
    }

    /// Runs a prepared command to its end (no worker running).
    pub async fn finish(&self, mut cmd: tokio::process::Command) -> Run {
        Run::from(cmd.output().await.expect("dcbackup runs"))
    }

    /// Runs a prepared command while the worker takes jobs off the queue, until it ends.
    pub async fn finish_with_worker(&self, mut cmd: tokio::process::Command) -> Run {
        let out = self.with_worker(cmd.output()).await;
        Run::from(out.expect("dcbackup runs"))
    }

    /// Awaits `work` while the worker takes jobs off the queue, as Lambda's event source
    /// mapping would.
    pub async fn with_worker<F: std::future::Future>(&self, work: F) -> F::Output {
        let stop = Arc::new(AtomicBool::new(false));
        let pump = {
            let (lab, stop) = (Arc::clone(&self.lab), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    lab.pump_once().await;
                }
            })
        };
        let out = work.await;
        stop.store(true, Ordering::Relaxed);
        pump.await.expect("the pump ends");
        out
    }

    /// Registers a managed, online subcloud with a running agent; the agent is returned so
    /// it lives as long as the caller keeps it.
    pub async fn subcloud_with_agent(
        &self,
        name: &str,
        group: &str,
    ) -> dcbackup_tests::lab::LabAgent {
        let agent = self.lab.agent(name).await;
        self.run([
            "subcloud",
            "add",
            "--name",
            name,
            "--software-version",
            "24.09",
            "--group",
            group,
            "--management-state",
            "managed",
            "--availability-status",
            "online",
            "--agent-url",
            &agent.url,
        ])
        .await
        .expect(0);
        agent
    }
}

/// A port on 127.0.0.1 that nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}
