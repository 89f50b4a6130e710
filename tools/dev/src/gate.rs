//! `dcbackup-dev gate`: the admission in front of `cargo lambda watch` for `make run`.
//! watch deadlocks for good once about 100 invocations of one function are queued, every route
//! at once (FACTS.md, "cargo lambda watch under load"), and a user's script can burst far past
//! that. The gate forwards at most `--max-in-flight` requests at a time and holds the others in
//! line: a burst is answered late, never refused and never lost.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Well under watch's ~100 queued invocations per function, even if every request in flight
/// is for the same function.
const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Requests are small (the API's own limit is 1 MiB by default); the gate buffers one so it
/// can send it again while watch is still starting.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How long a request waits for watch to start listening (it starts after the gate).
const UPSTREAM_START: Duration = Duration::from_secs(120);

struct Gate {
    upstream: Authority,
    client: Client<HttpConnector, Full<Bytes>>,
    permits: Semaphore,
}

/// `gate --listen ADDR --upstream HOST:PORT [--max-in-flight N]`: serves until killed.
pub async fn run(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let (mut listen, mut upstream, mut max_in_flight) = (None, None, DEFAULT_MAX_IN_FLIGHT);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse::<SocketAddr>().context("--listen")?),
            "--upstream" => upstream = Some(value()?.parse::<Authority>().context("--upstream")?),
            "--max-in-flight" => {
                max_in_flight = value()?.parse().context("--max-in-flight")?;
                if max_in_flight == 0 {
                    bail!("--max-in-flight must be at least 1");
                }
            }
            _ => bail!("unknown option {flag}; usage: gate --listen ADDR --upstream HOST:PORT [--max-in-flight N]"),
        }
    }
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        bail!("usage: gate --listen ADDR --upstream HOST:PORT [--max-in-flight N]");
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let gate = Arc::new(Gate {
        upstream,
        client: Client::builder(TokioExecutor::new()).build_http(),
        permits: Semaphore::new(max_in_flight),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors under a burst: wait for some to close.
                eprintln!("gate: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let gate = Arc::clone(&gate);
                async move { Ok::<_, Infallible>(gate.forward(request).await) }
            });
            // A client that goes away mid-request is its own business.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Gate {
    /// Waits for a place, then passes the request on; the place is held until the answer's
    /// head is back (watch answers once the invocation has ended). A request watch cannot take
    /// yet (not listening: it is starting) waits and goes again; nothing was sent.
    async fn forward(&self, request: Request<Incoming>) -> Response<BoxBody<Bytes, hyper::Error>> {
        let Ok(_place) = self.permits.acquire().await else {
            return unavailable("the gate is closing".into());
        };
        let (mut parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(body) => body.to_bytes(),
            Err(error) => return unavailable(format!("cannot read the request body: {error}")),
        };
        let mut uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.upstream.clone());
        if let Some(path) = parts.uri.path_and_query() {
            uri = uri.path_and_query(path.clone());
        }
        parts.uri = match uri.build() {
            Ok(uri) => uri,
            Err(error) => return unavailable(format!("cannot forward {}: {error}", parts.uri)),
        };
        let deadline = Instant::now() + UPSTREAM_START;
        loop {
            let attempt = Request::from_parts(parts.clone(), Full::new(body.clone()));
            match self.client.request(attempt).await {
                Ok(response) => return response.map(BodyExt::boxed),
                Err(error) if error.is_connect() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => {
                    return unavailable(format!(
                        "the local API (cargo lambda watch on {}) did not answer: {error}",
                        self.upstream
                    ))
                }
            }
        }
    }
}

/// dcbackup's error shape (SPEC §2), for the one thing the gate itself can say.
fn unavailable(message: String) -> Response<BoxBody<Bytes, hyper::Error>> {
    let body = serde_json::json!({"error": {"code": 503, "title": "Service Unavailable", "message": message}});
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a static response is well formed")
}
