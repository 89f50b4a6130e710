//! The worker's side of the subcloud agent protocol (`agent/README.md`): HTTP+JSON over TLS
//! with a short-lived worker token per request, audience = the subcloud's name. Agents'
//! certificates are verified against the system roots plus an optional CA bundle (sites often
//! run a private CA), the worker can present a client certificate (mutual TLS), and plain
//! `http://` is refused unless the agent is on a loopback address or it is explicitly allowed.
//! Every call is bounded by a timeout so no invocation waits long on an agent.

use crate::domain::AgentUrl;
use dcbackup_protocol::tls::{self, PemError};
use dcbackup_protocol::{
    mint_worker_token, BackupRequest, ErrorBody, JobView, PartUrls, Release, RestoreRequest, Secret,
};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use std::path::PathBuf;
use std::time::Duration;

/// How long one agent call may take by default (the agent answers at once; long work runs as
/// a job).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Worker tokens live just long enough for one call.
const TOKEN_TTL: Duration = Duration::from_secs(120);

/// How the worker's TLS to the agents is set up (configuration, read once per cold start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTls {
    /// A PEM bundle of CAs trusted for agents' certificates besides the system roots
    /// (`DCBACKUP_AGENT_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// A PEM certificate chain and its key presented to agents that require client
    /// certificates (`DCBACKUP_AGENT_CLIENT_CERT_FILE`, `DCBACKUP_AGENT_CLIENT_KEY_FILE`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Whether plain `http://` may reach agents on other than loopback addresses
    /// (`DCBACKUP_AGENT_ALLOW_HTTP=true`); the worker token would cross the network in clear.
    pub allow_http: bool,
}

/// Why the agent client could not be built; names the file at fault.
#[derive(Debug, thiserror::Error)]
#[error("agent TLS: {0}")]
pub struct TlsSetupError(String);

impl AgentTls {
    fn client_config(&self) -> Result<ClientConfig, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped, as every TLS client does; a bundle
        // given in the configuration must be read whole.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = &self.ca_file {
            tls::add_cas(&mut roots, path)?;
        }
        let builder = ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .with_root_certificates(roots);
        // hyper-rustls sets the ALPN protocols itself (`enable_http1`).
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(tls::certificates(cert)?, tls::private_key(key)?)
                .map_err(|e| TlsSetupError(format!("client certificate and key: {e}")))?,
        };
        Ok(config)
    }
}

impl From<PemError> for TlsSetupError {
    fn from(pem: PemError) -> Self {
        TlsSetupError(pem.to_string())
    }
}

/// Whether `url` names this host: plain HTTP there never crosses a network.
fn is_loopback(uri: &http::Uri) -> bool {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An error and its sources: hyper's own message is only "client error (Connect)"; the
/// sources say what went wrong (a refused connection, an untrusted certificate, ...).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The TLS failure behind a connection error, with what to do about it, if TLS failed.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{AlertDescription, CertificateError, Error as Tls};
    let mut cause = Some(error);
    while let Some(e) = cause {
        // hyper-rustls wraps the handshake's I/O error in another one, and an I/O error's
        // `source` skips the error it wraps: unwrap them by hand.
        let mut inner: &(dyn std::error::Error + 'static) = e;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        let tls = inner.downcast_ref::<Tls>();
        if let Some(tls) = tls {
            let hint = match tls {
                Tls::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    "its certificate is not signed by a CA the worker trusts (system roots and DCBACKUP_AGENT_CA_FILE)"
                }
                Tls::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => "its certificate has expired: renew it",
                Tls::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                ) => "its certificate does not name the host of the agent-url",
                Tls::AlertReceived(AlertDescription::CertificateRequired)
                | Tls::AlertReceived(AlertDescription::HandshakeFailure) => {
                    "the agent requires a client certificate the worker did not present (DCBACKUP_AGENT_CLIENT_CERT_FILE)"
                }
                Tls::AlertReceived(
                    AlertDescription::UnknownCA
                    | AlertDescription::BadCertificate
                    | AlertDescription::CertificateExpired,
                ) => "the agent refused the worker's client certificate",
                _ => "the TLS handshake failed",
            };
            return Some(format!("{tls} ({hint})"));
        }
        cause = e.source();
    }
    None
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("TLS with the agent at {url} failed: {why}")]
    Tls { url: String, why: String },
    #[error("plain http to the agent at {url} is refused: it is not on a loopback address; serve the agent over https (or set DCBACKUP_AGENT_ALLOW_HTTP=true)")]
    PlainHttp { url: String },
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
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    secret: Secret,
    timeout: Duration,
    allow_http: bool,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client signing tokens with `secret` and reaching agents as `tls` says.
    pub fn new(secret: Secret, tls: &AgentTls) -> Result<AgentClient, TlsSetupError> {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls.client_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(AgentClient {
            http: Client::builder(TokioExecutor::new()).build(https),
            secret,
            timeout: CALL_TIMEOUT,
            allow_http: tls.allow_http,
        })
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
        let uri: http::Uri =
            url.parse()
                .map_err(|e: http::uri::InvalidUri| AgentError::Protocol {
                    url: url.clone(),
                    why: e.to_string(),
                })?;
        if uri.scheme_str() == Some("http") && !self.allow_http && !is_loopback(&uri) {
            return Err(AgentError::PlainHttp {
                url: agent.as_str().to_owned(),
            });
        }
        let token = mint_worker_token(self.secret.as_bytes(), subcloud, TOKEN_TTL)
            .map_err(|e| AgentError::Token(e.to_string()))?;
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
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
        let tls = |e: &(dyn std::error::Error + 'static)| {
            tls_failure(e).map(|why| AgentError::Tls {
                url: agent.as_str().to_owned(),
                why,
            })
        };
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                tls(&e).unwrap_or_else(|| {
                    if e.is_connect() {
                        unreachable(chain(&e))
                    } else {
                        no_answer(chain(&e))
                    }
                })
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| tls(&e).unwrap_or_else(|| no_answer(chain(&e))))?
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

    /// Hands a running central backup more part URLs; returns the job as it then stands.
    pub async fn part_urls(
        &self,
        agent: &AgentUrl,
        subcloud: &str,
        op_id: &str,
        parts: &PartUrls,
    ) -> Result<JobView, AgentError> {
        let body = serde_json::to_string(parts).map_err(|e| AgentError::Protocol {
            url: agent.as_str().to_owned(),
            why: e.to_string(),
        })?;
        self.start(agent, subcloud, &format!("/v1/jobs/{op_id}/parts"), body)
            .await
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
