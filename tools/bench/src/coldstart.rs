//! P3: how long a function takes from exec to its first `GET /runtime/invocation/next`, the
//! moment Lambda's init phase ends, against a local stand-in for the Lambda Runtime API; the
//! same for Python 3.11 + boto3 + PyJWT through awslambdaric doing the same init; and the
//! release function's zipped size.

use crate::report::Settings;
use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Starts measured per runtime, after one unmeasured start that warms the page cache.
const STARTS: usize = 20;
/// A start that has not asked for its first event by then failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const NEXT: &str = "GET /2018-06-01/runtime/invocation/next ";
/// The HS256 key both runtimes load at init.
const SECRET: &str = "dcbackup-bench-cold-start-secret-0123456789";

/// The Python baseline's handler: the init the Rust function does (three clients, the token
/// key), and a handler that verifies a token as it would.
const PYTHON_HANDLER: &str = r#""""make bench: the Python baseline of subcloud-backup-create's cold start."""
import os

import boto3
import jwt

_session = boto3.session.Session()
dynamodb = _session.client("dynamodb")
sqs = _session.client("sqs")
s3 = _session.client("s3")
_key = os.environ["DCBACKUP_AUTH_HS256_SECRET"]
_issuer = os.environ["DCBACKUP_AUTH_ISSUER"]
_audience = os.environ["DCBACKUP_AUTH_AUDIENCE"]


def handler(event, context):
    token = event["headers"]["x-auth-token"]
    jwt.decode(token, _key, algorithms=["HS256"], issuer=_issuer, audience=_audience)
    return {"statusCode": 200, "body": "{}"}
"#;

/// P3's measurements.
pub struct ColdStart {
    pub rust: Vec<Duration>,
    pub python: Vec<Duration>,
    /// The Python baseline's versions.
    pub python_label: String,
    pub binary_bytes: u64,
    pub zip_bytes: u64,
}

pub async fn measure(settings: &Settings) -> anyhow::Result<ColdStart> {
    let function = settings.function.clone();
    let python = settings.python.clone();
    tokio::task::spawn_blocking(move || measure_blocking(&function, &python)).await?
}

fn measure_blocking(function: &Path, python: &Path) -> anyhow::Result<ColdStart> {
    let dir = std::env::temp_dir().join(format!("dcbackup-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("handler.py"), PYTHON_HANDLER)?;
    let runtime_api = RuntimeApi::start()?;

    let rust = || {
        let mut command = Command::new(function);
        command.current_dir(&dir);
        command
    };
    let python_start = || {
        let mut command = Command::new(python);
        command
            .args(["-m", "awslambdaric", "handler.handler"])
            .current_dir(&dir)
            .env("PYTHONPATH", &dir);
        command
    };
    let mut rust_starts = Vec::new();
    let mut python_starts = Vec::new();
    runtime_api.start_once(rust(), &dir)?;
    runtime_api.start_once(python_start(), &dir)?;
    for _ in 0..STARTS {
        rust_starts.push(runtime_api.start_once(rust(), &dir)?);
        python_starts.push(runtime_api.start_once(python_start(), &dir)?);
    }

    let binary_bytes = std::fs::metadata(function)?.len();
    let zip = dir.join("function.zip");
    let zipped = Command::new(python)
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    \
             z.write(sys.argv[2], 'bootstrap')",
        ])
        .arg(&zip)
        .arg(function)
        .status()?;
    anyhow::ensure!(zipped.success(), "zipping {} failed", function.display());
    let zip_bytes = std::fs::metadata(&zip)?.len();
    let python_label = python_versions(python)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(ColdStart {
        rust: rust_starts,
        python: python_starts,
        python_label,
        binary_bytes,
        zip_bytes,
    })
}

fn python_versions(python: &Path) -> anyhow::Result<String> {
    let output = Command::new(python)
        .args([
            "-c",
            "import sys\nfrom importlib.metadata import version as v\n\
             print(f'Python {sys.version.split()[0]} + boto3 {v(\"boto3\")} + PyJWT {v(\"PyJWT\")} \
             (awslambdaric {v(\"awslambdaric\")})')",
        ])
        .output()?;
    anyhow::ensure!(output.status.success(), "{} does not run", python.display());
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// The Lambda Runtime API stand-in: a loopback listener that notes when a runtime asks for
/// its first event. It never answers: the start is over then, and the runtime is stopped.
struct RuntimeApi {
    address: String,
    /// When each connection's runtime asked, and the connection, held open until the runtime
    /// is stopped so that it does not ask again.
    asked: mpsc::Receiver<anyhow::Result<(Instant, TcpStream)>>,
}

impl RuntimeApi {
    fn start() -> anyhow::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?.to_string();
        let (tx, asked) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let when = stream.map_err(anyhow::Error::from).and_then(first_line);
                if tx.send(when).is_err() {
                    return;
                }
            }
        });
        Ok(RuntimeApi { address, asked })
    }

    /// Execs `command` as a Lambda runtime would be and returns how long it took to ask for
    /// its first event.
    fn start_once(&self, mut command: Command, home: &Path) -> anyhow::Result<Duration> {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("AWS_LAMBDA_RUNTIME_API", &self.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "subcloud-backup-create")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "/aws/lambda/subcloud-backup-create",
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            // Nothing is sent at init; were it, it would go nowhere but this host.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("DCBACKUP_AUTH_ALGORITHMS", "HS256")
            .env("DCBACKUP_AUTH_ISSUER", "dcbackup-bench")
            .env("DCBACKUP_AUTH_AUDIENCE", "dcbackup")
            .env("DCBACKUP_AUTH_HS256_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Nothing a stopped runtime left behind counts for this one.
        while self.asked.try_recv().is_ok() {}
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let asked = self.asked.recv_timeout(START_TIMEOUT);
        child.kill().ok();
        let output = child.wait_with_output()?;
        match asked {
            Ok(Ok((at, _connection))) => Ok(at.duration_since(started)),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!(
                "{command:?} did not ask for an event within {START_TIMEOUT:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }
}

/// When the request line of `stream` arrived, if it asks for the next event.
fn first_line(stream: TcpStream) -> anyhow::Result<(Instant, TcpStream)> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let at = Instant::now();
    if !line.starts_with(NEXT) {
        bail!("the runtime's first request was not for the next event: {line:?}");
    }
    Ok((at, stream))
}
