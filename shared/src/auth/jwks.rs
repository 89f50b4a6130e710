//! The keys for RS256/ES256 tokens (SPEC §6): a JWKS document read from a file at start, or
//! fetched from a URL on first use and cached — fetched again when the set lapses (its
//! `Cache-Control: max-age`, capped by configuration), for an unknown `kid` at most once per
//! minimum refetch interval, and served stale only for a bounded time while the URL is down.
//! Verification itself is in `auth/jwt.rs`.

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
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::config::JwksSource;
use super::jwt::rejected;
use super::{AuthConfig, AuthConfigError, AuthError};

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

/// Public keys by `kid`, from a file read at start or a URL fetched on demand.
pub(super) struct Jwks {
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
    /// The key source `config` names, if any: a JWKS file is read and parsed now (a bad one
    /// stops the start), a URL is only remembered.
    pub(super) fn from_config(
        config: &AuthConfig,
        algorithms: &[Algorithm],
        clock: Clock,
    ) -> Result<Option<Jwks>, AuthConfigError> {
        let jwks = match &config.jwks {
            Some(JwksSource::File(path)) => {
                let document = std::fs::read(path).map_err(|e| AuthConfigError::JwksFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let keys = KeySet::parse(&document, algorithms).map_err(|reason| {
                    AuthConfigError::JwksFile {
                        path: path.clone(),
                        reason,
                    }
                })?;
                Some(Jwks {
                    keys: RwLock::new(Some(Cached {
                        keys: Arc::new(keys),
                        fresh_until: None,
                        usable_until: None,
                    })),
                    remote: None,
                    clock,
                })
            }
            Some(JwksSource::Url(uri)) => Some(Jwks {
                keys: RwLock::new(None),
                remote: Some(Remote {
                    uri: uri.clone(),
                    algorithms: algorithms.to_vec(),
                    min_refetch: config.jwks_min_refetch,
                    max_age: config.jwks_max_age,
                    stale_for: config.jwks_stale_for,
                    state: Mutex::new(RemoteState {
                        last_attempt: None,
                        client: None,
                    }),
                }),
                clock,
            }),
            None => None,
        };
        Ok(jwks)
    }

    pub(super) async fn key(
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use http::HeaderValue;
    use serde_json::{json, Value};

    use super::*;
    use crate::auth::jwt::tests::{claims, headers, rs256, sign, AUDIENCE, ISSUER, JWKS, SECRET};
    use crate::auth::{AuthConfigBuilder, Authenticator, Principal, SigningAlgorithm};

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
