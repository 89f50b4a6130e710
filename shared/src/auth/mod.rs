//! Authentication and authorization, done by every function before it touches any data (SPEC
//! §6). A request's token is taken from its headers ([`extract`]), verified as a JWT against
//! algorithms, keys and claims pinned by configuration ([`jwt`]; RS256/ES256 keys from a JWKS
//! file or URL, cached by `auth/jwks.rs`), and the resulting [`Principal`] is checked against
//! an oslo.policy rule ([`policy`]). An [`Authenticator`] holds all three; it is built once per
//! cold start without network I/O from an [`AuthConfig`] (`auth/config.rs`) and shared by every
//! invocation.

mod config;
pub mod extract;
mod jwks;
pub mod jwt;
pub mod policy;

use std::collections::BTreeSet;
use std::fmt;

use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

pub use config::{AuthConfig, AuthConfigBuilder, AuthConfigError, SigningAlgorithm};
pub use jwt::MintError;
pub use policy::{Denied, Policy, PolicyError};

/// The caller, as established by a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// The roles the token grants, as given (implied roles are the policy's business).
    pub roles: BTreeSet<String>,
    /// The token's `project_name`, if any.
    pub project: Option<String>,
    /// Every claim of the token, for generic `<claim>:<value>` policy checks.
    claims: Map<String, Value>,
}

impl Principal {
    /// A principal without other claims, for tests and local tools.
    pub fn new(
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
        project: Option<&str>,
    ) -> Self {
        Principal {
            subject: subject.into(),
            roles: roles.into_iter().map(Into::into).collect(),
            project: project.map(str::to_owned),
            claims: Map::new(),
        }
    }

    /// Adds a claim that generic policy checks can see.
    pub fn with_claim(mut self, name: impl Into<String>, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    /// A claim of the token the principal came from.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    fn from_token(
        subject: String,
        roles: BTreeSet<String>,
        project: Option<String>,
        claims: Map<String, Value>,
    ) -> Self {
        Principal {
            subject,
            roles,
            project,
            claims,
        }
    }
}

/// Why a request is not authenticated. `Display` is the public message for the response body:
/// it never contains the token and, beyond "expired" and "not yet valid", does not say which
/// check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("conflicting tokens")]
    Conflicting,
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("invalid token")]
    Invalid,
    /// The JWKS document could not be fetched: the caller may be fine, the service is not.
    #[error("token keys unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// 401 for anything about the token, 503 when the keys to check it cannot be had.
    pub fn status(self) -> StatusCode {
        match self {
            AuthError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` value to send with a 401 (RFC 6750 §3).
    pub fn www_authenticate(self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::KeysUnavailable => "Bearer",
            _ => "Bearer error=\"invalid_token\"",
        }
    }
}

/// Verifies tokens and enforces policy. Build one per cold start and share it (`Arc`).
pub struct Authenticator {
    config: AuthConfig,
    verifier: jwt::Verifier,
    policy: Policy,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads the JWKS file (if configured) and the policy file over the defaults. A JWKS URL is
    /// not fetched here but on first use.
    pub fn new(config: AuthConfig) -> Result<Authenticator, AuthConfigError> {
        Self::with_clock(config, jwks::Clock::default())
    }

    /// [`Authenticator::new`] with the JWKS cache reading time from `clock`.
    pub(crate) fn with_clock(
        config: AuthConfig,
        clock: jwks::Clock,
    ) -> Result<Authenticator, AuthConfigError> {
        let policy = match &config.policy_file {
            Some(path) => Policy::with_overrides_file(path)?,
            None => Policy::defaults(),
        };
        let verifier = jwt::Verifier::new(&config, clock)?;
        Ok(Authenticator {
            config,
            verifier,
            policy,
        })
    }

    /// The caller behind the request's token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let result = match extract::token(headers) {
            Ok(token) => self.verifier.verify(token).await,
            Err(error) => Err(error),
        };
        if let Err(error) = &result {
            tracing::info!(%error, "request not authenticated");
        }
        result
    }

    /// Whether `principal` may do what `rule` guards; an unknown rule denies.
    pub fn authorize(&self, rule: &str, principal: &Principal) -> Result<(), Denied> {
        self.policy.enforce(rule, principal)
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::header::AUTHORIZATION;
    use http::HeaderValue;

    use super::policy::rules;
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hs256_config() -> AuthConfig {
        AuthConfig::builder("https://issuer.test", "dcbackup")
            .algorithms([SigningAlgorithm::Hs256])
            .hs256_secret(SECRET)
            .build()
            .expect("valid config")
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("header value");
        headers.insert(AUTHORIZATION, value);
        headers
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let config = hs256_config();
        assert!(!format!("{config:?}").contains(SECRET));
        let authenticator = Authenticator::new(config).expect("authenticator");
        assert!(!format!("{authenticator:?}").contains(SECRET));
        let builder = AuthConfig::builder("i", "a").hs256_secret(SECRET);
        assert!(!format!("{builder:?}").contains(SECRET));
    }

    #[tokio::test]
    async fn minted_local_token_authenticates() {
        let authenticator = Authenticator::new(hs256_config()).expect("authenticator");
        let token = authenticator
            .config()
            .mint_local_token(
                "alice",
                &["admin".to_owned(), "operator".to_owned()],
                "admin",
                Duration::from_secs(300),
            )
            .expect("minted");
        let principal = authenticator
            .authenticate(&bearer(&token))
            .await
            .expect("authenticated");
        assert_eq!(principal.subject, "alice");
        assert_eq!(
            principal.roles,
            BTreeSet::from(["admin".to_owned(), "operator".to_owned()])
        );
        assert_eq!(principal.project.as_deref(), Some("admin"));
        assert_eq!(
            principal.claim("iss"),
            Some(&Value::from("https://issuer.test"))
        );
        assert!(authenticator
            .authorize(rules::SUBCLOUD_BACKUP_RESTORE, &principal)
            .is_ok());
    }

    #[tokio::test]
    async fn roles_come_from_the_configured_claim() {
        let config = AuthConfig::builder("https://issuer.test", "dcbackup")
            .algorithms([SigningAlgorithm::Hs256])
            .hs256_secret(SECRET)
            .roles_claim("groups")
            .build()
            .expect("config");
        let authenticator = Authenticator::new(config).expect("authenticator");
        let token = authenticator
            .config()
            .mint_local_token(
                "bob",
                &["reader".to_owned()],
                "services",
                Duration::from_secs(60),
            )
            .expect("minted");
        let principal = authenticator
            .authenticate(&bearer(&token))
            .await
            .expect("authenticated");
        assert_eq!(principal.roles, BTreeSet::from(["reader".to_owned()]));
        assert_eq!(principal.claim("roles"), None);
    }

    #[test]
    fn minting_needs_hs256() {
        let config = AuthConfig::builder("https://issuer.test", "dcbackup")
            .algorithms([SigningAlgorithm::Rs256, SigningAlgorithm::Es256])
            .jwks_file(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/auth/testdata/jwks.json"
            ))
            .build()
            .expect("config");
        let error = config
            .mint_local_token("alice", &[], "admin", Duration::from_secs(60))
            .expect_err("refused");
        assert_eq!(
            error.to_string(),
            "local tokens are HS256, but the configured algorithms are RS256, ES256"
        );
        let error = hs256_config()
            .mint_local_token("", &[], "admin", Duration::from_secs(60))
            .expect_err("refused");
        assert!(matches!(error, MintError::EmptySubject));
    }

    #[test]
    fn authorize_names_the_denying_rule() {
        let authenticator = Authenticator::new(hs256_config()).expect("authenticator");
        let reader = Principal::new("r", ["reader"], Some("admin"));
        assert!(authenticator
            .authorize(rules::SUBCLOUD_BACKUP_GET, &reader)
            .is_ok());
        let denied = authenticator
            .authorize(rules::SUBCLOUD_BACKUP_CREATE, &reader)
            .expect_err("denied");
        assert_eq!(denied.rule, rules::SUBCLOUD_BACKUP_CREATE);
        assert_eq!(
            denied.to_string(),
            "Policy doesn't allow dc_api:subcloud_backup:create to be performed."
        );
        let admin = Principal::new("a", ["admin"], Some("admin"));
        let denied = authenticator
            .authorize("dc_api:no_such_rule", &admin)
            .expect_err("unknown rule denies");
        assert_eq!(denied.rule, "dc_api:no_such_rule");
    }

    #[test]
    fn a_bad_policy_file_stops_the_start() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/auth/testdata/policy_bad.yaml"
        );
        let config = AuthConfig::builder("https://issuer.test", "dcbackup")
            .algorithms([SigningAlgorithm::Hs256])
            .hs256_secret(SECRET)
            .policy_file(path)
            .build()
            .expect("config");
        let error = Authenticator::new(config).expect_err("refused");
        let message = error.to_string();
        assert!(message.contains(path), "{message}");
        assert!(
            message.contains("dc_api:subcloud_backup:create"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_jwks_file_stops_the_start() {
        let cases = [
            ("/nonexistent/jwks.json", "/nonexistent/jwks.json"),
            (
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/src/auth/testdata/policy_override.json"
                ),
                "not a JWKS document",
            ),
        ];
        for (path, expected) in cases {
            let config = AuthConfig::builder("https://issuer.test", "dcbackup")
                .algorithms([SigningAlgorithm::Rs256])
                .jwks_file(path)
                .build()
                .expect("config");
            let error = Authenticator::new(config).expect_err("refused");
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn errors_map_to_responses() {
        assert_eq!(AuthError::Missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(AuthError::Expired.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthError::KeysUnavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(AuthError::Missing.www_authenticate(), "Bearer");
        assert_eq!(
            AuthError::Invalid.www_authenticate(),
            "Bearer error=\"invalid_token\""
        );
    }

    #[test]
    fn authenticator_is_shareable() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Authenticator>();
    }
}
