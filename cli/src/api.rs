//! The HTTP client of the dcbackup API: JSON in and out, the token in `X-Auth-Token` (as
//! dcmanager clients send it), and every failure turned into a `CliError` with its exit
//! code. TLS is rustls on aws-lc-rs with the system's trust store, or only the CA bundle.

use crate::config::{Settings, Token};
use crate::error::CliError;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;

/// How long one request may take before the API counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Api {
    client: reqwest::Client,
    /// The `/v1.0` root, always ending in `/`.
    base: Url,
    token: Option<Token>,
}

/// A successful answer's JSON body (`Value::Null` when empty, as a 204's).
#[derive(Debug)]
pub struct Reply {
    pub body: Value,
}

impl Api {
    /// A client for the API at `settings.url`; a bad URL or CA bundle is a usage error.
    pub fn new(settings: Settings) -> Result<Api, CliError> {
        let mut base = Url::parse(&settings.url)
            .map_err(|e| CliError::Usage(format!("API URL {:?}: {e}", settings.url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(CliError::Usage(format!(
                "API URL {:?} must be an http:// or https:// URL",
                settings.url
            )));
        }
        let path = base.path().trim_end_matches('/');
        let path = path.strip_suffix("/v1.0").unwrap_or(path).to_owned();
        base.set_path(&format!("{path}/v1.0/"));
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("dcbackup/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::Usage(format!("cannot read the CA bundle {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| CliError::Usage(format!("CA bundle {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(CliError::Usage(format!(
                    "CA bundle {} holds no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Api {
            client,
            base,
            token: settings.token,
        })
    }

    /// The URL of a route: `segments` are appended one by one, each percent-encoded, so a
    /// name can never change the path's shape.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("the base URL was checked to be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// `GET` a route.
    pub async fn get(&self, segments: &[&str]) -> Result<Reply, CliError> {
        self.send(Method::GET, segments, None).await
    }

    /// Sends one request: 2xx gives the body; 401/403 are `Auth`, 5xx and transport
    /// failures `Unreachable`, any other status the API's `Refused` with its message.
    pub async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Reply, CliError> {
        let url = self.url(segments);
        let mut request = self
            .client
            .request(method, url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header("X-Auth-Token", token.expose());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let origin = url.origin().ascii_serialization();
        let response = request.send().await.map_err(|e| {
            CliError::Unreachable(format!(
                "cannot reach the dcbackup API at {origin}: {}",
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            CliError::Unreachable(format!(
                "the dcbackup API at {origin} broke off its answer: {}",
                error_chain(&e)
            ))
        })?;
        let body: Option<Value> = if bytes.is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if status.is_success() {
            let body = body.ok_or_else(|| {
                CliError::Unreachable(format!(
                    "{origin} answered HTTP {status} with a body that is not JSON: is it the dcbackup API?"
                ))
            })?;
            return Ok(Reply { body });
        }
        let error = body.as_ref().map(|b| &b["error"]);
        let message = error
            .and_then(|e| e["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "{origin} answered {status} without a dcbackup error body: is it the dcbackup API?"
                )
            });
        let subclouds = error
            .and_then(|e| e["subclouds"].as_array())
            .cloned()
            .unwrap_or_default();
        let status_code = status.as_u16();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Auth {
                status: status_code,
                message,
                hint: if self.token.is_none() {
                    "; give a token with --token, DCBACKUP_TOKEN, OS_AUTH_TOKEN, --token-file or a profile"
                } else {
                    ""
                },
            },
            s if s.is_server_error() => CliError::Unreachable(format!(
                "the dcbackup API is unavailable: {message} (HTTP {status_code})"
            )),
            _ => CliError::Refused {
                status: status_code,
                message,
                subclouds,
            },
        })
    }
}

/// An error and its causes on one line (reqwest's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
