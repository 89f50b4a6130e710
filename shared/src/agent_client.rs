//! The worker's side of the subcloud agent protocol (`agent/README.md`): plain HTTP+JSON with
//! a short-lived worker token per request, audience = the subcloud's name. Every call is
//! bounded by a timeout so no invocation waits long on an agent.

use crate::domain::AgentUrl;
use dcbackup_agent::protocol::{BackupRequest, ErrorBody, JobView, Release, RestoreRequest};
use dcbackup_agent::{mint_worker_token, Secret};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// How long one agent call may take by default (the agent answers at once; long work runs as
/// a job).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Worker tokens live just long enough for one call.
const TOKEN_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No connection could be made: the request never reached the agent.
    #[error("the agent at {url} is unreachable: {why}")]
    Unreachable { url: String, why: String },
    /// The request may have reached the agent, but no answer came (timeout, connection
    /// lost): the agent may have acted on it.
    #[error("the agent at {url} did not answer: {why}")]
    NoAnswer { url: String, why: String },
    #[error("the agent at {url} refused the request ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the agent at {url} answered something unexpected: {why}")]
    Protocol { url: String, why: String },
    #[error("worker token: {0}")]
    Token(String),
}

pub struct AgentClient {
    http: Client<HttpConnector, Full<Bytes>>,
    secret: Secret,
    timeout: Duration,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").finish_non_exhaustive()
    }
}

impl AgentClient {
    pub fn new(secret: Secret) -> AgentClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        AgentClient {
            http: Client::builder(TokioExecutor::new()).build(connector),
            secret,
            timeout: CALL_TIMEOUT,
        }
    }

    /// The same client with another bound on each call (default `CALL_TIMEOUT`).
    pub fn with_timeout(self, timeout: Duration) -> AgentClient {
        AgentClient { timeout, ..self }
    }

    async fn call(
        &self,
        agent: &AgentUrl,
        subcloud: &str,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), AgentError> {
        let url = format!("{}{path}", agent.as_str());
        let token = mint_worker_token(self.secret.as_bytes(), subcloud, TOKEN_TTL)
            .map_err(|e| AgentError::Token(e.to_string()))?;
        let request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| AgentError::Protocol {
                url: url.clone(),
                why: e.to_string(),
            })?;
        let unreachable = |why: String| AgentError::Unreachable {
            url: url.clone(),
            why,
        };
        let no_answer = |why: String| AgentError::NoAnswer {
            url: url.clone(),
            why,
        };
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    unreachable(e.to_string())
                } else {
                    no_answer(e.to_string())
                }
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| no_answer(e.to_string()))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| no_answer(format!("no answer within {:?}", self.timeout)))?
    }

    fn refused(agent: &AgentUrl, status: StatusCode, body: &[u8]) -> AgentError {
        // Only the agent's own error text: a body that is not one (a proxy's page) is not
        // repeated, since it could echo the request and its token.
        let message = serde_json::from_slice::<ErrorBody>(body)
            .map(|e| e.error)
            .unwrap_or_else(|_| "no error message".to_owned());
        AgentError::Refused {
            url: agent.as_str().to_owned(),
            status: status.as_u16(),
            message,
        }
    }

    fn job_view(agent: &AgentUrl, body: &[u8]) -> Result<JobView, AgentError> {
        serde_json::from_slice(body).map_err(|e| AgentError::Protocol {
            url: agent.as_str().to_owned(),
            why: e.to_string(),
        })
    }

    pub async fn health(&self, agent: &AgentUrl, subcloud: &str) -> Result<(), AgentError> {
        let (status, body) = self
            .call(agent, subcloud, Method::GET, "/v1/health", None)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::refused(agent, status, &body))
        }
    }

    async fn start(
        &self,
        agent: &AgentUrl,
        subcloud: &str,
        path: &str,
        body: String,
    ) -> Result<JobView, AgentError> {
        let (status, reply) = self
            .call(agent, subcloud, Method::POST, path, Some(body))
            .await?;
        if status.is_success() {
            Self::job_view(agent, &reply)
        } else {
            Err(Self::refused(agent, status, &reply))
        }
    }

    /// Starts (or, for the same op id, finds) a backup job.
    pub async fn start_backup(
        &self,
        agent: &AgentUrl,
        subcloud: &str,
        request: &BackupRequest,
    ) -> Result<JobView, AgentError> {
        let body = serde_json::to_string(request).map_err(|e| AgentError::Protocol {
            url: agent.as_str().to_owned(),
            why: e.to_string(),
        })?;
        self.start(agent, subcloud, "/v1/backups", body).await
    }

    pub async fn start_restore(
        &self,
        agent: &AgentUrl,
        subcloud: &str,
        request: &RestoreRequest,
    ) -> Result<JobView, AgentError> {
        let body = serde_json::to_string(request).map_err(|e| AgentError::Protocol {
            url: agent.as_str().to_owned(),
            why: e.to_string(),
        })?;
        self.start(agent, subcloud, "/v1/restores", body).await
    }

    /// A job's state; `None` if the agent does not know it (it restarted).
    pub async fn job(
        &self,
        agent: &AgentUrl,
        subcloud: &str,
        op_id: &str,
    ) -> Result<Option<JobView>, AgentError> {
        let path = format!("/v1/jobs/{op_id}");
        let (status, body) = self.call(agent, subcloud, Method::GET, &path, None).await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Self::job_view(agent, &body).map(Some),
            s => Err(Self::refused(agent, s, &body)),
        }
    }

    pub async fn delete_local(
        &self,
        agent: &AgentUrl,
        subcloud: &str,
        release: &Release,
    ) -> Result<(), AgentError> {
        let path = format!("/v1/backups/{release}");
        let (status, body) = self
            .call(agent, subcloud, Method::DELETE, &path, None)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::refused(agent, status, &body))
        }
    }
}
