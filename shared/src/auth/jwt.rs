//! JWT verification and local minting. The algorithms, issuer, audience and leeway come from
//! configuration and nothing in a token can widen them: the header's `alg` only picks one of the
//! configured algorithms, and its key is the shared secret (HS256) or a JWKS key of that same
//! algorithm (RS256, ES256). A JWKS URL is fetched on first use and cached for the response's
//! `Cache-Control: max-age` (capped by configuration): once that lapses it is fetched again in
//! the background, and the old set is served only while that fails, for a bounded time. An
//! unknown `kid` also fetches, at most once per minimum interval however many callers ask.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{ACCEPT, CACHE_CONTROL};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use super::config::JwksSource;
use super::{AuthConfig, AuthConfigError, AuthError, Principal, SigningAlgorithm};

/// A JWKS document is a few keys; anything much larger is not one.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// A cold start must not hang on a slow identity provider.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Now, as the key cache sees it. Tests move a manual clock instead of sleeping.
#[derive(Clone, Default)]
pub(crate) struct Clock(Option<Arc<std::sync::Mutex<Instant>>>);

impl Clock {
    fn now(&self) -> Instant {
        match &self.0 {
            Some(manual) => *manual.lock().unwrap_or_else(|e| e.into_inner()),
            None => Instant::now(),
        }
    }

    /// A clock that stands still until [`Clock::advance`].
    #[cfg(test)]
    pub(crate) fn manual() -> Clock {
        Clock(Some(Arc::new(std::sync::Mutex::new(Instant::now()))))
    }

    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        if let Some(manual) = &self.0 {
            *manual.lock().expect("clock") += by;
        }
    }
}

/// Checks tokens against the configuration it was built from.
pub(crate) struct Verifier {
    /// One per configured algorithm, each built from configuration alone.
    validations: Vec<(Algorithm, Validation)>,
    secret: Option<Arc<DecodingKey>>,
    jwks: Option<Arc<Jwks>>,
    roles_claim: String,
}

impl Verifier {
    pub(crate) fn new(config: &AuthConfig, clock: Clock) -> Result<Self, AuthConfigError> {
        let algorithms: Vec<Algorithm> = config.algorithms.iter().map(|a| a.jwt()).collect();
        let validations = algorithms
            .iter()
            .map(|&alg| {
                let mut validation = Validation::new(alg);
                validation.leeway = config.leeway.as_secs();
                validation.validate_exp = true;
                validation.validate_nbf = true;
                validation.validate_aud = true;
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&[&config.audience]);
                // jsonwebtoken checks iss and aud only when present unless they are required.
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                (alg, validation)
            })
            .collect();
        let secret = config
            .hs256_secret
            .as_ref()
            .map(|s| Arc::new(DecodingKey::from_secret(s.0.as_bytes())));
        let jwks = match &config.jwks {
            Some(JwksSource::File(path)) => {
                let document = std::fs::read(path).map_err(|e| AuthConfigError::JwksFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let keys = KeySet::parse(&document, &algorithms).map_err(|reason| {
                    AuthConfigError::JwksFile {
                        path: path.clone(),
                        reason,
                    }
                })?;
                Some(Arc::new(Jwks {
                    keys: RwLock::new(Some(Cached {
                        keys: Arc::new(keys),
                        fresh_until: None,
                        usable_until: None,
                    })),
                    remote: None,
                    clock,
                }))
            }
            Some(JwksSource::Url(uri)) => Some(Arc::new(Jwks {
                keys: RwLock::new(None),
                remote: Some(Remote {
                    uri: uri.clone(),
                    algorithms: algorithms.clone(),
                    min_refetch: config.jwks_min_refetch,
                    max_age: config.jwks_max_age,
                    stale_for: config.jwks_stale_for,
                    state: Mutex::new(RemoteState {
                        last_attempt: None,
                        client: None,
                    }),
                }),
                clock,
            })),
            None => None,
        };
        Ok(Verifier {
            validations,
            secret,
            jwks,
            roles_claim: config.roles_claim.clone(),
        })
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if !well_formed(token) {
            return Err(rejected(AuthError::Malformed, "not three base64url parts"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| from_jwt(&e))?;
        let Some((alg, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg)
        else {
            return Err(rejected(AuthError::Invalid, "algorithm not configured"));
        };
        // No header extension is understood, so one marked critical must fail (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err(rejected(AuthError::Invalid, "critical header extension"));
        }
        let key = match (alg, &self.secret, &self.jwks) {
            (Algorithm::HS256, Some(secret), _) => Arc::clone(secret),
            (Algorithm::RS256 | Algorithm::ES256, _, Some(jwks)) => {
                jwks.key(header.kid.as_deref(), *alg).await?
            }
            _ => return Err(rejected(AuthError::Invalid, "no key for algorithm")),
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, validation)
            .map_err(|e| from_jwt(&e))?;
        registered_claim_types(&data.claims)?;
        principal(data.claims, &self.roles_claim)
    }
}

/// Rejects what cannot be a compact JWS before any decoding.
fn well_formed(token: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = token.splitn(4, '.').collect();
    parts.len() == 3 && parts.iter().all(|p| part(p))
}

/// Logs why a token was refused (never the token) and returns the public outcome.
fn rejected(outcome: AuthError, reason: &'static str) -> AuthError {
    tracing::debug!(reason, "token rejected");
    outcome
}

fn from_jwt(error: &jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => rejected(AuthError::Expired, "expired"),
        ErrorKind::ImmatureSignature => rejected(AuthError::NotYetValid, "not yet valid"),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => rejected(AuthError::Malformed, "undecodable header or claims"),
        ErrorKind::InvalidSignature => rejected(AuthError::Invalid, "bad signature"),
        ErrorKind::InvalidIssuer => rejected(AuthError::Invalid, "wrong issuer"),
        ErrorKind::InvalidAudience => rejected(AuthError::Invalid, "wrong audience"),
        ErrorKind::MissingRequiredClaim(_) => {
            rejected(AuthError::Invalid, "missing required claim")
        }
        ErrorKind::InvalidClaimFormat(_) => rejected(AuthError::Invalid, "claim of wrong type"),
        ErrorKind::InvalidAlgorithm => rejected(AuthError::Invalid, "algorithm does not fit key"),
        _ => rejected(AuthError::Invalid, "refused by verifier"),
    }
}

/// The registered claims' JSON types (RFC 7519 §4.1): `iss`, `sub`, `jti` strings, `aud` a
/// string or a list of strings, `exp`, `nbf`, `iat` numbers. jsonwebtoken accepts an `iss` list
/// holding the right issuer and does not look at the claims it does not validate.
fn registered_claim_types(claims: &Map<String, Value>) -> Result<(), AuthError> {
    let fits = |name: &str, value: &Value| match name {
        "iss" | "sub" | "jti" => value.is_string(),
        "aud" => {
            value.is_string()
                || value
                    .as_array()
                    .is_some_and(|list| !list.is_empty() && list.iter().all(Value::is_string))
        }
        "exp" | "nbf" | "iat" => value.is_number(),
        _ => true,
    };
    if claims.iter().all(|(name, value)| fits(name, value)) {
        Ok(())
    } else {
        Err(rejected(
            AuthError::Invalid,
            "registered claim of the wrong type",
        ))
    }
}

fn principal(claims: Map<String, Value>, roles_claim: &str) -> Result<Principal, AuthError> {
    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(rejected(AuthError::Invalid, "empty subject")),
    };
    let roles = match claims.get(roles_claim) {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| rejected(AuthError::Invalid, "roles claim is not a list of strings"))?,
        Some(_) => {
            return Err(rejected(
                AuthError::Invalid,
                "roles claim is not a list of strings",
            ))
        }
    };
    let project = match claims.get("project_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(rejected(AuthError::Invalid, "project_name is not a string")),
    };
    Ok(Principal::from_token(subject, roles, project, claims))
}

/// Public keys by `kid`, from a file read at start or a URL fetched on demand.
struct Jwks {
    /// `None` until a URL's first successful fetch.
    keys: RwLock<Option<Cached>>,
    remote: Option<Remote>,
    clock: Clock,
}

/// A key set and how long it may be used; `None` is for ever (a file read at start).
#[derive(Clone)]
struct Cached {
    keys: Arc<KeySet>,
    /// Until then the set is used as is; after it, it is fetched again in the background.
    fresh_until: Option<Instant>,
    /// Until then a set that could not be fetched again is still served; after it, never.
    usable_until: Option<Instant>,
}

impl Cached {
    fn usable_at(&self, now: Instant) -> bool {
        self.usable_until.is_none_or(|until| now < until)
    }

    fn stale_at(&self, now: Instant) -> bool {
        self.fresh_until.is_some_and(|until| now >= until)
    }
}

impl Jwks {
    async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, AuthError> {
        let now = self.clock.now();
        let usable = self.keys.read().await.clone().filter(|c| c.usable_at(now));
        if let Some(cached) = usable {
            if cached.stale_at(now) {
                self.revalidate_in_background();
            }
            match cached.keys.select(kid, alg) {
                Selection::Found(key) => return Ok(key),
                Selection::Mismatch => return Err(rejected(AuthError::Invalid, "no key fits")),
                Selection::UnknownKid => {}
            }
        }
        let Some(remote) = &self.remote else {
            return Err(rejected(AuthError::Invalid, "unknown kid"));
        };
        let keys = remote.refresh(&self.keys, &self.clock, kid, alg).await?;
        match keys.select(kid, alg) {
            Selection::Found(key) => Ok(key),
            Selection::Mismatch => Err(rejected(AuthError::Invalid, "no key fits")),
            Selection::UnknownKid => Err(rejected(AuthError::Invalid, "unknown kid")),
        }
    }

    /// Fetches a lapsed set again without making the request that noticed wait for it.
    fn revalidate_in_background(self: &Arc<Self>) {
        let jwks = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(remote) = &jwks.remote {
                remote.revalidate(&jwks.keys, &jwks.clock).await;
            }
        });
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

struct Remote {
    uri: Uri,
    algorithms: Vec<Algorithm>,
    min_refetch: Duration,
    /// The longest a fetched set is fresh, whatever its `Cache-Control` says.
    max_age: Duration,
    /// How long a lapsed set is still served while it cannot be fetched again.
    stale_for: Duration,
    /// Held across a fetch so that concurrent callers wait for it instead of fetching too.
    state: Mutex<RemoteState>,
}

struct RemoteState {
    last_attempt: Option<Instant>,
    /// Built on the first fetch: reading the system roots is work a cold start may not need.
    client: Option<HttpClient>,
}

impl Remote {
    /// The key set for a `kid` the cache does not hold (or when there is no usable set): fetched
    /// again if the minimum interval allows; the usable cached one if not, or if the fetch fails.
    async fn refresh(
        &self,
        cache: &RwLock<Option<Cached>>,
        clock: &Clock,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, AuthError> {
        let mut state = self.state.lock().await;
        let now = clock.now();
        let current = cache.read().await.clone().filter(|c| c.usable_at(now));
        if let Some(cached) = &current {
            // Another caller may have fetched while this one waited for the lock.
            if !matches!(cached.keys.select(kid, alg), Selection::UnknownKid) {
                return Ok(Arc::clone(&cached.keys));
            }
        }
        let throttled = state
            .last_attempt
            .is_some_and(|at| now.duration_since(at) < self.min_refetch);
        let fetched = if throttled {
            None
        } else {
            self.fetch_into(&mut state, cache, clock).await
        };
        fetched
            .or(current.map(|c| c.keys))
            .ok_or(AuthError::KeysUnavailable)
    }

    /// Fetches a lapsed set again, unless a fetch is under way or was tried within the
    /// minimum interval; on failure the old set stays until its `usable_until`.
    async fn revalidate(&self, cache: &RwLock<Option<Cached>>, clock: &Clock) {
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        let now = clock.now();
        let lapsed = cache.read().await.as_ref().is_none_or(|c| c.stale_at(now));
        let throttled = state
            .last_attempt
            .is_some_and(|at| now.duration_since(at) < self.min_refetch);
        if lapsed && !throttled {
            self.fetch_into(&mut state, cache, clock).await;
        }
    }

    /// One fetch; a good set replaces the cache and is returned, a failure is logged.
    async fn fetch_into(
        &self,
        state: &mut RemoteState,
        cache: &RwLock<Option<Cached>>,
        clock: &Clock,
    ) -> Option<Arc<KeySet>> {
        state.last_attempt = Some(clock.now());
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch(state)).await {
            Ok(Ok((keys, max_age))) => {
                // A provider asking for no caching still gets one set per minimum interval.
                let fresh_for = max_age
                    .unwrap_or(self.max_age)
                    .clamp(self.min_refetch, self.max_age);
                let fetched_at = clock.now();
                let keys = Arc::new(keys);
                *cache.write().await = Some(Cached {
                    keys: Arc::clone(&keys),
                    fresh_until: Some(fetched_at + fresh_for),
                    usable_until: Some(fetched_at + fresh_for + self.stale_for),
                });
                tracing::info!(
                    url = %self.uri,
                    keys = keys.keys.len(),
                    fresh_seconds = fresh_for.as_secs(),
                    "JWKS fetched"
                );
                Some(keys)
            }
            Ok(Err(error)) => {
                tracing::warn!(url = %self.uri, %error, "JWKS fetch failed");
                None
            }
            Err(_) => {
                tracing::warn!(url = %self.uri, timeout = ?FETCH_TIMEOUT, "JWKS fetch timed out");
                None
            }
        }
    }

    /// The key set and the response's `max-age`, if it gave one.
    async fn fetch(
        &self,
        state: &mut RemoteState,
    ) -> Result<(KeySet, Option<Duration>), FetchError> {
        let client = match &state.client {
            Some(client) => client.clone(),
            None => {
                let https = HttpsConnectorBuilder::new()
                    .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
                    .map_err(FetchError::Tls)?
                    .https_or_http()
                    .enable_http1()
                    .build();
                let client = Client::builder(TokioExecutor::new()).build(https);
                state.client = Some(client.clone());
                client
            }
        };
        let request = Request::get(self.uri.clone())
            .header(ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(FetchError::Request)?;
        let response = client.request(request).await.map_err(FetchError::Send)?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let max_age = max_age(response.headers());
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(FetchError::Body)?
            .to_bytes();
        let keys = KeySet::parse(&body, &self.algorithms).map_err(FetchError::Document)?;
        Ok((keys, max_age))
    }
}

/// How long a response may be cached by its `Cache-Control` (RFC 9111 §5.2.2): `max-age=N`, or
/// nothing for `no-store` / `no-cache`; `None` when it says neither. Two directives are all a
/// key-set fetch needs, which is not worth an HTTP-cache crate.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let directives = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    let mut max_age = None;
    for directive in directives {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "no-store" | "no-cache" => return Some(Duration::ZERO),
            "max-age" => {
                max_age = value
                    .trim()
                    .trim_matches('"')
                    .parse()
                    .ok()
                    .map(Duration::from_secs)
            }
            _ => {}
        }
    }
    max_age
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("cannot set up TLS: {0}")]
    Tls(std::io::Error),
    #[error("cannot build the request: {0}")]
    Request(http::Error),
    #[error("request failed: {0}")]
    Send(hyper_util::client::legacy::Error),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("cannot read the body: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Document(String),
}

/// The signing keys of a JWKS usable with the configured algorithms.
struct KeySet {
    keys: Vec<SigningKey>,
}

struct SigningKey {
    kid: Option<String>,
    alg: Algorithm,
    key: Arc<DecodingKey>,
}

enum Selection {
    Found(Arc<DecodingKey>),
    /// The `kid` is known but not for this algorithm, or there is no `kid` and no single key.
    Mismatch,
    UnknownKid,
}

impl KeySet {
    /// Keeps RSA and P-256 signing keys the configured algorithms can use. Symmetric (`oct`)
    /// keys are never taken from a JWKS: that would let a public document hold an HMAC key.
    fn parse(document: &[u8], algorithms: &[Algorithm]) -> Result<KeySet, String> {
        let set: JwkSet =
            serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            let declared_other = jwk
                .common
                .key_algorithm
                .is_some_and(|declared| declared != KeyAlgorithm::from(alg));
            if declared_other || !algorithms.contains(&alg) {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push(SigningKey {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key: Arc::new(key),
                }),
                Err(error) => tracing::warn!(
                    kid = jwk.common.key_id.as_deref().unwrap_or("-"),
                    %error,
                    "JWKS key skipped"
                ),
            }
        }
        if keys.is_empty() {
            let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
            return Err(format!("no signing key for {}", names.join(", ")));
        }
        Ok(KeySet { keys })
    }

    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection {
        let found = |k: &SigningKey| Selection::Found(Arc::clone(&k.key));
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Selection::UnknownKid;
                }
                named
                    .find(|k| k.alg == alg)
                    .map_or(Selection::Mismatch, found)
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.alg == alg);
                match (usable.next(), usable.next()) {
                    (Some(key), None) => found(key),
                    _ => Selection::Mismatch,
                }
            }
        }
    }
}

/// Why a local token was not minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("local tokens are HS256, but the configured algorithms are {configured}")]
    NotHs256 { configured: String },
    #[error("a token needs a non-empty subject")]
    EmptySubject,
    #[error("cannot sign the token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

pub(crate) fn mint(
    config: &AuthConfig,
    subject: &str,
    roles: &[String],
    project: &str,
    ttl: Duration,
) -> Result<String, MintError> {
    let secret = config
        .hs256_secret
        .as_ref()
        .filter(|_| config.algorithms.contains(&SigningAlgorithm::Hs256))
        .ok_or_else(|| MintError::NotHs256 {
            configured: config.algorithm_list(),
        })?;
    if subject.is_empty() {
        return Err(MintError::EmptySubject);
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = Map::new();
    claims.insert("iss".into(), config.issuer.clone().into());
    claims.insert("aud".into(), config.audience.clone().into());
    claims.insert("sub".into(), subject.into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(ttl.as_secs()).into());
    claims.insert(config.roles_claim.clone(), roles.into());
    claims.insert("project_name".into(), project.into());
    let key = EncodingKey::from_secret(secret.0.as_bytes());
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use http::header::AUTHORIZATION;
    use http::{HeaderMap, HeaderValue};
    use jsonwebtoken::get_current_timestamp;
    use serde_json::json;

    use super::*;
    use crate::auth::{AuthConfigBuilder, Authenticator};

    const ISSUER: &str = "https://issuer.test";
    const AUDIENCE: &str = "dcbackup";
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
    const JWKS: &str = include_str!("testdata/jwks.json");
    const JWKS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/testdata/jwks.json");

    fn all_algorithms() -> Authenticator {
        let config = AuthConfig::builder(ISSUER, AUDIENCE)
            .algorithms([
                SigningAlgorithm::Hs256,
                SigningAlgorithm::Rs256,
                SigningAlgorithm::Es256,
            ])
            .hs256_secret(SECRET)
            .jwks_file(JWKS_FILE)
            .build()
            .expect("config");
        Authenticator::new(config).expect("authenticator")
    }

    fn rs256_only() -> Authenticator {
        let config = AuthConfig::builder(ISSUER, AUDIENCE)
            .algorithms([SigningAlgorithm::Rs256])
            .jwks_file(JWKS_FILE)
            .build()
            .expect("config");
        Authenticator::new(config).expect("authenticator")
    }

    fn claims() -> Value {
        let now = get_current_timestamp();
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 600,
            "roles": ["operator"],
            "project_name": "services",
            "email": "alice@example.test",
        })
    }

    fn with(changes: Value) -> Value {
        let mut claims = claims();
        if let (Value::Object(base), Value::Object(changes)) = (&mut claims, changes) {
            for (name, value) in changes {
                if value.is_null() {
                    base.remove(&name);
                } else {
                    base.insert(name, value);
                }
            }
        }
        claims
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let key = match alg {
            Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa"),
            Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec"),
            other => panic!("no test key for {other:?}"),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &key).expect("signed")
    }

    fn rs256(claims: &Value) -> String {
        sign(Algorithm::RS256, Some("rsa-1"), claims)
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// A token whose header is whatever the attacker likes, signed with `key` as HMAC.
    fn forged_hs256(header: Value, claims: &Value, key: &[u8]) -> String {
        let message = format!("{}.{}", b64(&header), b64(claims));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(key),
            Algorithm::HS256,
        )
        .expect("signed");
        format!("{message}.{signature}")
    }

    fn tampered(token: &str, claims: &Value) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        format!("{}.{}.{}", parts[0], b64(claims), parts[2])
    }

    fn headers(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header value"),
        );
        headers
    }

    #[tokio::test]
    async fn valid_tokens_pass() {
        let auth = all_algorithms();
        let cases = [
            ("RS256", rs256(&claims())),
            ("ES256", sign(Algorithm::ES256, Some("ec-1"), &claims())),
            ("HS256", sign(Algorithm::HS256, None, &claims())),
            (
                "RS256 without kid, one RSA key",
                sign(Algorithm::RS256, None, &claims()),
            ),
            (
                "expired within the leeway",
                rs256(&with(json!({"exp": get_current_timestamp() - 10}))),
            ),
            (
                "nbf within the leeway",
                rs256(&with(json!({"nbf": get_current_timestamp() + 10}))),
            ),
            (
                "audience list holding ours",
                rs256(&with(json!({"aud": ["other", AUDIENCE]}))),
            ),
            (
                "no roles, no project",
                rs256(&with(json!({"roles": null, "project_name": null}))),
            ),
        ];
        for (name, token) in cases {
            let principal = auth
                .authenticate(&headers(&token))
                .await
                .unwrap_or_else(|e| panic!("{name}: refused with {e}"));
            assert_eq!(principal.subject, "alice", "{name}");
        }

        let principal = auth
            .authenticate(&headers(&rs256(&claims())))
            .await
            .expect("valid");
        assert_eq!(principal.roles, ["operator".to_owned()].into());
        assert_eq!(principal.project.as_deref(), Some("services"));
        assert_eq!(principal.claim("email"), Some(&json!("alice@example.test")));
    }

    #[tokio::test]
    async fn bad_tokens_get_401() {
        let now = get_current_timestamp();
        let valid = rs256(&claims());
        let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"});
        let cases: Vec<(&str, String, AuthError)> = vec![
            (
                "expired",
                rs256(&with(json!({"exp": now - 3600}))),
                AuthError::Expired,
            ),
            (
                "not yet valid",
                rs256(&with(json!({"nbf": now + 3600}))),
                AuthError::NotYetValid,
            ),
            (
                "wrong iss",
                rs256(&with(json!({"iss": "https://evil.test"}))),
                AuthError::Invalid,
            ),
            (
                "wrong aud",
                rs256(&with(json!({"aud": "someone-else"}))),
                AuthError::Invalid,
            ),
            (
                "missing sub",
                rs256(&with(json!({"sub": null}))),
                AuthError::Invalid,
            ),
            (
                "empty sub",
                rs256(&with(json!({"sub": ""}))),
                AuthError::Invalid,
            ),
            (
                "missing exp",
                rs256(&with(json!({"exp": null}))),
                AuthError::Invalid,
            ),
            (
                "missing iss",
                rs256(&with(json!({"iss": null}))),
                AuthError::Invalid,
            ),
            (
                "missing aud",
                rs256(&with(json!({"aud": null}))),
                AuthError::Invalid,
            ),
            (
                "roles not a list",
                rs256(&with(json!({"roles": "admin"}))),
                AuthError::Invalid,
            ),
            (
                "project_name not a string",
                rs256(&with(json!({"project_name": ["admin"]}))),
                AuthError::Invalid,
            ),
            (
                "alg none, empty signature",
                format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims())),
                AuthError::Malformed,
            ),
            (
                "alg none, some signature",
                format!(
                    "{}.{}.AAAA",
                    b64(&json!({"alg": "none", "typ": "JWT"})),
                    b64(&claims())
                ),
                AuthError::Malformed,
            ),
            (
                "HS256 signed with the RSA public key (key confusion)",
                forged_hs256(hs_header.clone(), &claims(), RSA_PUBLIC.as_bytes()),
                AuthError::Invalid,
            ),
            (
                "HS256 signed with another secret",
                forged_hs256(
                    json!({"alg": "HS256"}),
                    &claims(),
                    b"another secret of 32 bytes.......",
                ),
                AuthError::Invalid,
            ),
            (
                "tampered payload",
                tampered(
                    &valid,
                    &with(json!({"roles": ["admin"], "project_name": "admin"})),
                ),
                AuthError::Invalid,
            ),
            (
                "unknown kid",
                sign(Algorithm::RS256, Some("rsa-9"), &claims()),
                AuthError::Invalid,
            ),
            (
                "RS256 token naming the EC key",
                sign(Algorithm::RS256, Some("ec-1"), &claims()),
                AuthError::Invalid,
            ),
            (
                "critical header extension",
                {
                    let mut header = Header::new(Algorithm::HS256);
                    header.crit = Some(vec!["exp".to_owned()]);
                    let key = EncodingKey::from_secret(SECRET.as_bytes());
                    jsonwebtoken::encode(&header, &claims(), &key).expect("signed")
                },
                AuthError::Invalid,
            ),
            ("two parts", "abc.def".to_owned(), AuthError::Malformed),
            ("four parts", format!("{valid}.abc"), AuthError::Malformed),
            ("empty part", "abc..def".to_owned(), AuthError::Malformed),
            (
                "bad base64 characters",
                "a+b.c/d.e=f".to_owned(),
                AuthError::Malformed,
            ),
            (
                "base64 of no JSON",
                "abcd.efgh.ijkl".to_owned(),
                AuthError::Malformed,
            ),
            (
                "bad base64 length",
                "a.b.c".to_owned(),
                AuthError::Malformed,
            ),
            (
                "64 KiB token",
                rs256(&with(json!({"padding": "x".repeat(64 * 1024)}))),
                AuthError::TooLarge,
            ),
        ];
        let auth = all_algorithms();
        for (name, token, expected) in cases {
            let outcome = auth.authenticate(&headers(&token)).await;
            assert_eq!(outcome, Err(expected), "{name}");
            assert_eq!(expected.status(), StatusCode::UNAUTHORIZED, "{name}");
        }
    }

    /// RFC 7519 §4.1: every registered claim with each JSON type it must not have.
    #[tokio::test]
    async fn registered_claims_of_the_wrong_type_get_401() {
        let auth = all_algorithms();
        let now = get_current_timestamp();
        let wrong: Vec<(&str, Vec<Value>)> = vec![
            (
                "iss",
                vec![
                    json!([ISSUER]),
                    json!(1),
                    json!(true),
                    json!({"iss": ISSUER}),
                ],
            ),
            (
                "sub",
                vec![
                    json!(["alice"]),
                    json!(7),
                    json!(false),
                    json!({"id": "alice"}),
                ],
            ),
            (
                "aud",
                vec![
                    json!(1),
                    json!(true),
                    json!({"aud": AUDIENCE}),
                    json!([AUDIENCE, 1]),
                    json!([]),
                ],
            ),
            (
                "exp",
                vec![
                    json!((now + 600).to_string()),
                    json!(true),
                    json!([now + 600]),
                    json!({}),
                ],
            ),
            (
                "nbf",
                vec![
                    json!(now.to_string()),
                    json!(false),
                    json!([now]),
                    json!({}),
                ],
            ),
            (
                "iat",
                vec![json!(now.to_string()), json!(true), json!([now]), json!({})],
            ),
            ("jti", vec![json!(1), json!(true), json!(["id"]), json!({})]),
        ];
        for (claim, values) in wrong {
            for value in values {
                let mut claims = claims();
                claims[claim] = value.clone();
                let outcome = auth.authenticate(&headers(&rs256(&claims))).await;
                assert!(
                    matches!(outcome, Err(AuthError::Invalid | AuthError::Malformed)),
                    "{claim} = {value}: {outcome:?}"
                );
            }
        }
        let mut fine = claims();
        fine["jti"] = json!("a1");
        fine["nbf"] = json!(now as f64 - 0.5);
        assert!(auth.authenticate(&headers(&rs256(&fine))).await.is_ok());
    }

    #[tokio::test]
    async fn only_configured_algorithms_are_accepted() {
        let auth = rs256_only();
        let cases = [
            (
                "HS256 signed with the RSA public key",
                forged_hs256(
                    json!({"alg": "HS256", "kid": "rsa-1"}),
                    &claims(),
                    RSA_PUBLIC.as_bytes(),
                ),
            ),
            ("HS256", sign(Algorithm::HS256, None, &claims())),
            ("ES256", sign(Algorithm::ES256, Some("ec-1"), &claims())),
        ];
        for (name, token) in cases {
            assert_eq!(
                auth.authenticate(&headers(&token)).await,
                Err(AuthError::Invalid),
                "{name}"
            );
        }
        assert!(auth.authenticate(&headers(&rs256(&claims()))).await.is_ok());
    }

    #[test]
    fn jwks_keeps_only_usable_signing_keys() {
        let document = json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode(SECRET)},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AQAB"},
        ]});
        let all = [Algorithm::RS256, Algorithm::ES256];
        let error = KeySet::parse(document.to_string().as_bytes(), &all)
            .err()
            .expect("nothing usable");
        assert_eq!(error, "no signing key for RS256, ES256");

        let keys = KeySet::parse(JWKS.as_bytes(), &[Algorithm::ES256]).expect("EC key");
        assert_eq!(keys.keys.len(), 1);
        assert!(matches!(
            keys.select(Some("rsa-1"), Algorithm::RS256),
            Selection::UnknownKid
        ));
        assert!(matches!(
            keys.select(Some("ec-1"), Algorithm::ES256),
            Selection::Found(_)
        ));
        assert!(KeySet::parse(b"[]", &all).is_err());
    }

    /// Serves whatever JWKS document (and `Cache-Control`) the test puts in, counting requests;
    /// answers 503 while `failing`.
    struct JwksServer {
        url: String,
        document: Arc<std::sync::Mutex<(String, Option<String>)>>,
        failing: Arc<AtomicBool>,
        fetches: Arc<AtomicUsize>,
    }

    impl JwksServer {
        fn start(document: &str) -> JwksServer {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
            let document = Arc::new(std::sync::Mutex::new((document.to_owned(), None)));
            let failing = Arc::new(AtomicBool::new(false));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (served, fail, counter) = (
                Arc::clone(&document),
                Arc::clone(&failing),
                Arc::clone(&fetches),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (body, cache_control) = served.lock().expect("document").clone();
                    let status = if fail.load(Ordering::SeqCst) {
                        "503 Service Unavailable"
                    } else {
                        "200 OK"
                    };
                    let cache_control = cache_control
                        .map(|value| format!("Cache-Control: {value}\r\n"))
                        .unwrap_or_default();
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{cache_control}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(response.as_bytes());
                }
            });
            JwksServer {
                url,
                document,
                failing,
                fetches,
            }
        }

        fn serve(&self, document: String) {
            self.document.lock().expect("document").0 = document;
        }

        fn cache_control(&self, value: &str) {
            self.document.lock().expect("document").1 = Some(value.to_owned());
        }

        fn fail(&self, failing: bool) {
            self.failing.store(failing, Ordering::SeqCst);
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        /// Waits until the server has had `count` requests and the fetch behind the last one
        /// has been stored: the fetcher holds the remote's lock from before its request until
        /// the cache is written.
        async fn fetched(&self, auth: &Authenticator, count: usize) {
            for _ in 0..1000 {
                if self.fetches() >= count {
                    let jwks = auth.verifier.jwks.as_ref().expect("jwks");
                    drop(jwks.remote.as_ref().expect("remote").state.lock().await);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("the JWKS was not fetched a {count}th time");
        }
    }

    /// An authenticator for RS256/ES256 keys at `url`, on a manual clock.
    fn remote_with(url: &str, config: AuthConfigBuilder) -> (Arc<Authenticator>, Clock) {
        let config = config
            .algorithms([SigningAlgorithm::Rs256, SigningAlgorithm::Es256])
            .jwks_url(url)
            .build()
            .expect("config");
        let clock = Clock::manual();
        let auth = Authenticator::with_clock(config, clock.clone()).expect("authenticator");
        (Arc::new(auth), clock)
    }

    fn remote(url: &str, min_refetch: Duration) -> (Arc<Authenticator>, Clock) {
        remote_with(
            url,
            AuthConfig::builder(ISSUER, AUDIENCE).jwks_min_refetch(min_refetch),
        )
    }

    /// `count` concurrent authentications of `token`.
    async fn together(
        auth: &Arc<Authenticator>,
        token: &str,
        count: usize,
    ) -> Vec<Result<Principal, AuthError>> {
        let tasks: Vec<_> = (0..count)
            .map(|_| {
                let (auth, headers) = (Arc::clone(auth), headers(token));
                tokio::spawn(async move { auth.authenticate(&headers).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("task"));
        }
        outcomes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jwks_url_is_fetched_lazily_and_refetched_only_for_unknown_kids() {
        let interval = Duration::from_secs(60);
        let server = JwksServer::start(JWKS);
        let (auth, clock) = remote(&server.url, interval);
        assert_eq!(server.fetches(), 0, "no I/O at construction");

        let first = rs256(&claims());
        let results = together(&auth, &first, 8).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            server.fetches(),
            1,
            "first use fetches once for all callers"
        );
        assert!(auth.authenticate(&headers(&first)).await.is_ok());
        assert_eq!(server.fetches(), 1, "known kid: served from the cache");

        // The provider rotates in a key; tokens naming it arrive before the interval is over.
        let mut rotated: Value = serde_json::from_str(JWKS).expect("jwks");
        let mut new_key = rotated["keys"][0].clone();
        new_key["kid"] = json!("rsa-2");
        rotated["keys"].as_array_mut().expect("keys").push(new_key);
        server.serve(rotated.to_string());
        let second = sign(Algorithm::RS256, Some("rsa-2"), &claims());
        clock.advance(interval - Duration::from_secs(1));
        assert_eq!(
            auth.authenticate(&headers(&second)).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            server.fetches(),
            1,
            "unknown kid within the interval: no fetch"
        );

        clock.advance(Duration::from_secs(1));
        let results = together(&auth, &second, 8).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            server.fetches(),
            2,
            "unknown kid after the interval: one fetch"
        );
        assert!(auth.authenticate(&headers(&first)).await.is_ok());

        let unknown = sign(Algorithm::RS256, Some("rsa-9"), &claims());
        assert_eq!(
            auth.authenticate(&headers(&unknown)).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(server.fetches(), 2, "throttled");

        clock.advance(interval);
        let results = together(&auth, &unknown, 8).await;
        assert!(results.iter().all(|r| r == &Err(AuthError::Invalid)));
        assert_eq!(server.fetches(), 3, "a burst of unknown kids fetches once");
    }

    /// A JWKS with both RSA keys (`rsa-1`, `rsa-2`), or only `rsa-2` once `rsa-1` is dropped.
    fn two_keys(keep_first: bool) -> String {
        let mut jwks: Value = serde_json::from_str(JWKS).expect("jwks");
        let mut second = jwks["keys"][0].clone();
        second["kid"] = json!("rsa-2");
        let keys = jwks["keys"].as_array_mut().expect("keys");
        keys.push(second);
        if !keep_first {
            keys.retain(|k| k["kid"] != json!("rsa-1"));
        }
        jwks.to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_removed_from_the_jwks_stops_validating_once_its_max_age_lapses() {
        let server = JwksServer::start(&two_keys(true));
        server.cache_control("public, max-age=120");
        let (auth, clock) = remote(&server.url, Duration::from_secs(60));
        let compromised = rs256(&claims());
        let replacement = sign(Algorithm::RS256, Some("rsa-2"), &claims());
        assert!(auth.authenticate(&headers(&compromised)).await.is_ok());
        assert!(auth.authenticate(&headers(&replacement)).await.is_ok());
        assert_eq!(server.fetches(), 1);

        // The provider drops the compromised key; its replacement is already cached.
        server.serve(two_keys(false));
        clock.advance(Duration::from_secs(119));
        assert!(
            auth.authenticate(&headers(&compromised)).await.is_ok(),
            "fresh for max-age"
        );
        assert_eq!(server.fetches(), 1, "no fetch while fresh");

        clock.advance(Duration::from_secs(1));
        // The first request after the lapse is served from the old set while it is refetched.
        let _ = auth.authenticate(&headers(&replacement)).await;
        server.fetched(&auth, 2).await;
        assert_eq!(
            auth.authenticate(&headers(&compromised)).await,
            Err(AuthError::Invalid),
            "the dropped key no longer validates"
        );
        assert!(auth.authenticate(&headers(&replacement)).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_age_is_capped_by_configuration_and_no_cache_by_the_refetch_interval() {
        for (cache_control, lapses_after) in [
            ("max-age=31536000", 900), // a year asked; the 900 s ceiling wins
            ("no-cache", 60),          // the minimum refetch interval
            ("private", 900),          // no max-age: the ceiling
        ] {
            let server = JwksServer::start(&two_keys(true));
            server.cache_control(cache_control);
            let (auth, clock) = remote_with(
                &server.url,
                AuthConfig::builder(ISSUER, AUDIENCE)
                    .jwks_min_refetch(Duration::from_secs(60))
                    .jwks_max_age(Duration::from_secs(900)),
            );
            let token = rs256(&claims());
            assert!(auth.authenticate(&headers(&token)).await.is_ok());
            clock.advance(Duration::from_secs(lapses_after - 1));
            assert!(auth.authenticate(&headers(&token)).await.is_ok());
            assert_eq!(server.fetches(), 1, "{cache_control}: still fresh");
            clock.advance(Duration::from_secs(1));
            assert!(auth.authenticate(&headers(&token)).await.is_ok());
            server.fetched(&auth, 2).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lapsed_set_is_served_only_while_unreachable_and_only_for_a_bounded_time() {
        let server = JwksServer::start(&two_keys(true));
        server.cache_control("max-age=120");
        let (auth, clock) = remote_with(
            &server.url,
            AuthConfig::builder(ISSUER, AUDIENCE)
                .jwks_min_refetch(Duration::from_secs(60))
                .jwks_stale_for(Duration::from_secs(600)),
        );
        let token = rs256(&claims());
        assert!(auth.authenticate(&headers(&token)).await.is_ok());

        server.fail(true);
        clock.advance(Duration::from_secs(120));
        assert!(auth.authenticate(&headers(&token)).await.is_ok());
        server.fetched(&auth, 2).await;
        clock.advance(Duration::from_secs(599));
        assert!(
            auth.authenticate(&headers(&token)).await.is_ok(),
            "endpoint down: the old set is served for the stale period"
        );
        server.fetched(&auth, 3).await;

        clock.advance(Duration::from_secs(1));
        assert_eq!(
            auth.authenticate(&headers(&token)).await,
            Err(AuthError::KeysUnavailable),
            "past the stale period the old set is never used"
        );

        server.fail(false);
        clock.advance(Duration::from_secs(60));
        assert!(
            auth.authenticate(&headers(&token)).await.is_ok(),
            "back once the endpoint answers"
        );
    }

    #[test]
    fn cache_control_max_age() {
        let parse = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CACHE_CONTROL, HeaderValue::from_str(value).expect("value"));
            max_age(&headers)
        };
        assert_eq!(parse("max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse("public, Max-Age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse("no-store"), Some(Duration::ZERO));
        assert_eq!(parse("max-age=300, no-cache"), Some(Duration::ZERO));
        assert_eq!(parse("max-age=soon"), None);
        assert_eq!(parse("public"), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn unreachable_jwks_url_is_unavailable_not_invalid() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let (auth, _) = remote(
            &format!("http://127.0.0.1:{port}/jwks.json"),
            Duration::from_secs(60),
        );
        let token = rs256(&claims());
        for _ in 0..2 {
            let error = auth
                .authenticate(&headers(&token))
                .await
                .expect_err("no keys");
            assert_eq!(error, AuthError::KeysUnavailable);
            assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    #[tokio::test]
    async fn a_jwks_url_serving_no_keys_is_unavailable() {
        let server = JwksServer::start("{\"keys\": []}");
        let (auth, _) = remote(&server.url, Duration::from_secs(60));
        assert_eq!(
            auth.authenticate(&headers(&rs256(&claims()))).await,
            Err(AuthError::KeysUnavailable)
        );
        assert_eq!(server.fetches(), 1);
    }
}
