//! `make bench` (second part): the subcloud agent's peak memory while it backs up a 1 GiB
//! directory. Runs the real `dcbackup-agent` binary given as the only argument, else the one
//! built beside this one (same profile), has it back up 64 files of 16 MiB of incompressible
//! data twice, each time in a fresh process: a local backup, and a central one streamed in
//! 16 MiB parts to a local stand-in for S3's UploadPart URLs (which takes and drops the
//! bytes). Reads the process's peak resident set (`VmHWM` in `/proc/<pid>/status`) once the
//! job is done. Fails if either peak reaches 64 MiB.

use anyhow::{bail, ensure, Context};
use dcbackup_protocol::mint_worker_token;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 64;
const FILE_BYTES: usize = 16 << 20;
const LIMIT_MIB: u64 = 64;
/// The worker's default part size.
const PART_BYTES: usize = 16 << 20;
const SECRET: &str = "agent memory bench secret, 32+ bytes";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agent_bin = match std::env::args_os().nth(1) {
        Some(path) => std::path::PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("dcbackup-agent"),
    };
    ensure!(
        agent_bin.exists(),
        "{} is missing: build it with the same profile first",
        agent_bin.display()
    );
    let root = std::env::temp_dir().join(format!("dcbackup-agent-memory-{}", uuid::Uuid::new_v4()));
    let result = run(&agent_bin, &root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run(agent_bin: &std::path::Path, root: &std::path::Path) -> anyhow::Result<()> {
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    // xorshift64: incompressible, so the archive is as large as the data.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut block = vec![0u8; FILE_BYTES];
    for i in 0..FILES {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        std::fs::File::create(data.join(format!("file-{i:02}.bin")))?.write_all(&block)?;
    }
    drop(block);
    std::fs::write(root.join("secret"), SECRET)?;
    let sink = sink().await?;
    let parts = (FILES * FILE_BYTES / PART_BYTES + 2) as u32;
    let central = json!({
        "part_size": PART_BYTES,
        "parts": (1..=parts)
            .map(|n| json!({"part_number": n, "url": format!("{sink}/bucket/bench?partNumber={n}&uploadId=b")}))
            .collect::<Vec<_>>(),
    });
    for (what, upload) in [("local backup", Value::Null), ("central backup", central)] {
        measure(agent_bin, root, &data, what, upload).await?;
        let _ = std::fs::remove_dir_all(root.join("store"));
    }
    Ok(())
}

/// Backs `data` up in a fresh agent process (`upload`: null for local, else the multipart
/// upload) and checks its peak memory.
async fn measure(
    agent_bin: &std::path::Path,
    root: &std::path::Path,
    data: &std::path::Path,
    what: &str,
    upload: Value,
) -> anyhow::Result<()> {
    let mut child = Command::new(agent_bin)
        .args(["--name", "bench", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--store")
        .arg(root.join("store"))
        .arg("--secret-file")
        .arg(root.join("secret"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the agent")?;
    let outcome = drive(&mut child, upload).await;
    let _ = child.kill();
    let _ = child.wait();
    let (peak_kib, size, took) = outcome?;
    let data_mib = (FILES * FILE_BYTES) >> 20;
    println!(
        "agent peak RSS backing up {data_mib} MiB ({FILES} files, {what}): {:.1} MiB \
         (archive {size} bytes, {took:.1?})",
        peak_kib as f64 / 1024.0
    );
    ensure!(
        peak_kib < LIMIT_MIB * 1024,
        "the agent's peak memory reached {peak_kib} KiB (limit {LIMIT_MIB} MiB)"
    );
    Ok(())
}

/// A stand-in for S3's UploadPart URLs on 127.0.0.1: reads each PUT's body, keeps nothing,
/// answers 200 with an ETag. Returns its base URL.
async fn sink() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let mut body = request.into_body();
                        while let Some(frame) = body.frame().await {
                            frame?;
                        }
                        let response = http::Response::builder()
                            .header("etag", "\"bench\"")
                            .body(Full::new(Bytes::new()))
                            .unwrap_or_default();
                        Ok::<_, hyper::Error>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(url)
}

/// Runs the backup; returns the agent's peak RSS in KiB, the archive's size and the time.
async fn drive(
    child: &mut std::process::Child,
    upload: Value,
) -> anyhow::Result<(u64, u64, Duration)> {
    let stdout = child.stdout.take().context("agent stdout")?;
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {first:?}"))?
        .to_owned();
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let call = |method: http::Method, path: String, body: Option<Value>| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let token = mint_worker_token(SECRET.as_bytes(), "bench", Duration::from_secs(300))?;
            let request = http::Request::builder()
                .method(method)
                .uri(url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                )))?;
            let response = client.request(request).await?;
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(serde_json::from_slice::<Value>(&bytes)?)
        }
    };
    let op_id = uuid::Uuid::new_v4();
    let started = Instant::now();
    call(
        http::Method::POST,
        "/v1/backups".into(),
        Some(json!({"op_id": op_id, "release": "24.09", "upload": upload})),
    )
    .await?;
    let job = loop {
        let job = call(http::Method::GET, format!("/v1/jobs/{op_id}"), None).await?;
        if job["state"] != "running" {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let took = started.elapsed();
    if job["state"] != "succeeded" {
        bail!("the backup failed: {job}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    let size = job["result"]["size"].as_u64().unwrap_or(0);
    Ok((peak_kib, size, took))
}
