//! The HTTP side of the agent: hyper's HTTP/1 server, one task per connection, JSON in and
//! out. Every route but `GET /v1/health` needs a worker token, checked before the route is
//! even looked up, so an unauthenticated caller learns nothing but that it must authenticate.
//! Bad input is a 4xx with a message; nothing a caller sends can make a 5xx.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::agent::{Agent, DeleteError};
use crate::auth::AuthError;
use crate::jobs::{Admission, Job, JobRequest};
use dcbackup_protocol::{BackupRequest, ErrorBody, Health, PartUrls, Release, RestoreRequest};

/// Request bodies are a few KiB (the URLs are the largest part).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A batch of part URLs: a few dozen pre-signed URLs of up to ~2 KiB each.
const MAX_PARTS_BODY_BYTES: usize = 1024 * 1024;
/// A client that has not sent its headers by then is dropped (slow-loris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the agent on `listener` until the task is dropped: HTTPS if the agent was given a
/// certificate, else plain HTTP.
pub async fn serve(listener: TcpListener, agent: Arc<Agent>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let agent = Arc::clone(&agent);
        tokio::spawn(async move {
            match agent.tls.clone() {
                None => connection(stream, peer, agent).await,
                Some(acceptor) => {
                    // The handshake is bounded like the headers are (slow-loris).
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, peer, agent).await,
                        Ok(Err(error)) => {
                            tracing::info!(%peer, %error, "TLS handshake refused");
                        }
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one connection's requests.
async fn connection<S>(stream: S, peer: SocketAddr, agent: Arc<Agent>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let agent = Arc::clone(&agent);
        async move { Ok::<_, Infallible>(handle(&agent, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

async fn handle(agent: &Arc<Agent>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = route(agent, request)
        .await
        .unwrap_or_else(ApiError::into_response);
    tracing::debug!(%method, %path, status = response.status().as_u16(), "request");
    response
}

async fn route(
    agent: &Arc<Agent>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    if segments == ["v1", "health"] {
        return match method {
            Method::GET => Ok(json(
                StatusCode::OK,
                &Health {
                    name: agent.name().to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                },
            )),
            _ => Err(ApiError::MethodNotAllowed("GET")),
        };
    }
    agent
        .verifier
        .verify(request.headers().get(AUTHORIZATION))
        .map_err(ApiError::Unauthorized)?;
    match (method, segments.as_slice()) {
        (Method::POST, ["v1", "backups"]) => {
            let body: BackupRequest = read_json(request, MAX_BODY_BYTES).await?;
            start(agent, JobRequest::Backup(body))
        }
        (Method::POST, ["v1", "restores"]) => {
            let body: RestoreRequest = read_json(request, MAX_BODY_BYTES).await?;
            start(agent, JobRequest::Restore(body))
        }
        (Method::GET, ["v1", "jobs", op_id]) => {
            let job = job(agent, op_id)?;
            Ok(json(StatusCode::OK, &job.view()))
        }
        (Method::POST, ["v1", "jobs", op_id, "parts"]) => {
            let job = job(agent, op_id)?;
            let body: PartUrls = read_json(request, MAX_PARTS_BODY_BYTES).await?;
            let upload = job.upload.as_ref().ok_or_else(|| {
                ApiError::Conflict(format!(
                    "job {} is not a central backup: it takes no part URLs",
                    job.op_id()
                ))
            })?;
            upload.add(&body.parts);
            Ok(json(StatusCode::OK, &job.view()))
        }
        (Method::DELETE, ["v1", "backups", release]) => {
            let release: Release = release.parse().map_err(ApiError::BadRequest)?;
            let deleted = agent
                .delete_local(release.clone())
                .await
                .map_err(|e| match e {
                    DeleteError::Busy(busy) => ApiError::Conflict(busy.to_string()),
                    other => ApiError::Internal(other.to_string()),
                })?;
            tracing::info!(%release, archives = deleted, "local backups deleted");
            Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::default())
                .unwrap_or_default())
        }
        (_, ["v1", "backups" | "restores"]) => Err(ApiError::MethodNotAllowed("POST")),
        (_, ["v1", "jobs", _]) => Err(ApiError::MethodNotAllowed("GET")),
        (_, ["v1", "jobs", _, "parts"]) => Err(ApiError::MethodNotAllowed("POST")),
        (_, ["v1", "backups", _]) => Err(ApiError::MethodNotAllowed("DELETE")),
        _ => Err(ApiError::NotFound(format!("no route {path}"))),
    }
}

/// The job `op_id` names.
fn job(agent: &Agent, op_id: &str) -> Result<Arc<Job>, ApiError> {
    let op_id: Uuid = op_id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("op_id {op_id:?} is not a UUID")))?;
    agent
        .jobs
        .get(op_id)
        .ok_or_else(|| ApiError::NotFound(format!("no job {op_id}")))
}

/// Starts a job: 202 for a new one, 200 for the one the op_id already names; both carry it.
fn start(agent: &Arc<Agent>, request: JobRequest) -> Result<Response<Full<Bytes>>, ApiError> {
    match agent.start(request) {
        Ok(Admission::New(job)) => Ok(json(StatusCode::ACCEPTED, &job.view())),
        Ok(Admission::Existing(job)) => Ok(json(StatusCode::OK, &job.view())),
        Err(refusal) => Err(ApiError::Conflict(refusal.to_string())),
    }
}

async fn read_json<T: DeserializeOwned>(
    request: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    let body = Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|error| {
            if error.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::TooLarge(limit)
            } else {
                ApiError::BadRequest("cannot read the request body".into())
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    // Serializing these plain structs cannot fail; an empty body would still be well-formed.
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    Unauthorized(AuthError),
    NotFound(String),
    /// The method the path does allow.
    MethodNotAllowed(&'static str),
    Conflict(String),
    /// The limit the body went over.
    TooLarge(usize),
    Internal(String),
}

impl ApiError {
    fn into_response(self) -> Response<Full<Bytes>> {
        let (status, message) = match &self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message.clone()),
            ApiError::Unauthorized(error) => (StatusCode::UNAUTHORIZED, error.to_string()),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, message.clone()),
            ApiError::MethodNotAllowed(allowed) => (
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method not allowed; use {allowed}"),
            ),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, message.clone()),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {limit} bytes"),
            ),
            ApiError::Internal(message) => {
                tracing::error!(%message, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, message.clone())
            }
        };
        let mut response = json(status, &ErrorBody { error: message });
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed(allowed) => {
                headers.insert(ALLOW, http::HeaderValue::from_static(allowed));
            }
            _ => {}
        }
        response
    }
}
