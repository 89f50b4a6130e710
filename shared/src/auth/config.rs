//! The authentication configuration (SPEC §6): which algorithms a token may be signed with,
//! where their keys come from (the HS256 secret, a JWKS file or URL), the issuer, audience,
//! leeway and roles claim, and the policy file. Read once per cold start from the
//! `DCBACKUP_AUTH_*` variables ([`AuthConfig::from_env`]) or built in code
//! ([`AuthConfig::builder`]); [`AuthConfigBuilder::build`] refuses a set-up whose parts do not
//! fit, with an [`AuthConfigError`] that names the variable to fix.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::Uri;

use super::jwt::{self, MintError};
use super::PolicyError;

/// A token signature algorithm this service accepts when configured to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SigningAlgorithm {
    /// HMAC with a shared secret, for local use.
    Hs256,
    /// RSA PKCS#1 v1.5, key from the JWKS.
    Rs256,
    /// ECDSA P-256, key from the JWKS.
    Es256,
}

impl SigningAlgorithm {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Hs256 => "HS256",
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Es256 => "ES256",
        }
    }

    pub(super) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
            SigningAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            SigningAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = AuthConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HS256" => Ok(SigningAlgorithm::Hs256),
            "RS256" => Ok(SigningAlgorithm::Rs256),
            "ES256" => Ok(SigningAlgorithm::Es256),
            _ => Err(AuthConfigError::UnknownAlgorithm(s.trim().to_owned())),
        }
    }
}

/// Where the public keys for RS256/ES256 come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JwksSource {
    File(PathBuf),
    Url(Uri),
}

/// A shared secret that must not reach a log.
#[derive(Clone)]
pub(super) struct Secret(pub(super) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// HMAC keys shorter than the hash output are brute-forceable (RFC 7518 §3.2).
const MIN_HS256_SECRET_BYTES: usize = 32;
/// Leeway only absorbs clock skew; more would stretch every token's life.
const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Claims the verifier or the minter owns, which the roles claim must not shadow.
const RESERVED_CLAIMS: [&str; 7] = ["iss", "aud", "sub", "exp", "nbf", "iat", "project_name"];

/// How tokens are verified, validated once when built.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub(super) algorithms: BTreeSet<SigningAlgorithm>,
    pub(super) hs256_secret: Option<Secret>,
    pub(super) jwks: Option<JwksSource>,
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) leeway: Duration,
    pub(super) roles_claim: String,
    pub(super) jwks_min_refetch: Duration,
    pub(super) jwks_max_age: Duration,
    pub(super) jwks_stale_for: Duration,
    pub(super) policy_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Starts a configuration for tokens from `issuer` meant for `audience`.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> AuthConfigBuilder {
        AuthConfigBuilder {
            algorithms: Vec::new(),
            hs256_secret: None,
            jwks_file: None,
            jwks_url: None,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(30),
            roles_claim: "roles".to_owned(),
            jwks_min_refetch: Duration::from_secs(60),
            jwks_max_age: Duration::from_secs(900),
            jwks_stale_for: Duration::from_secs(3600),
            policy_file: None,
        }
    }

    /// Reads the `DCBACKUP_AUTH_*` and `DCBACKUP_POLICY_FILE` environment variables.
    /// A variable set to an empty string counts as unset.
    pub fn from_env() -> Result<AuthConfig, AuthConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AuthConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| var(name).ok_or(AuthConfigError::MissingVar(name));
        let seconds = |name: &'static str, default: u64| match var(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| AuthConfigError::NotSeconds {
                    var: name,
                    value: v,
                }),
        };

        let algorithms = required("DCBACKUP_AUTH_ALGORITHMS")?
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<SigningAlgorithm>, _>>()?;
        let mut builder = AuthConfig::builder(
            required("DCBACKUP_AUTH_ISSUER")?,
            required("DCBACKUP_AUTH_AUDIENCE")?,
        )
        .algorithms(algorithms)
        .leeway(Duration::from_secs(seconds(
            "DCBACKUP_AUTH_LEEWAY_SECONDS",
            30,
        )?))
        .jwks_min_refetch(Duration::from_secs(seconds(
            "DCBACKUP_AUTH_JWKS_MIN_REFETCH_SECONDS",
            60,
        )?))
        .jwks_max_age(Duration::from_secs(seconds(
            "DCBACKUP_AUTH_JWKS_MAX_AGE_SECONDS",
            900,
        )?))
        .jwks_stale_for(Duration::from_secs(seconds(
            "DCBACKUP_AUTH_JWKS_STALE_SECONDS",
            3600,
        )?));
        if let Some(secret) = lookup("DCBACKUP_AUTH_HS256_SECRET").filter(|s| !s.is_empty()) {
            builder = builder.hs256_secret(secret);
        }
        if let Some(path) = var("DCBACKUP_AUTH_JWKS_FILE") {
            builder = builder.jwks_file(path);
        }
        if let Some(url) = var("DCBACKUP_AUTH_JWKS_URL") {
            builder = builder.jwks_url(url);
        }
        if let Some(claim) = var("DCBACKUP_AUTH_ROLES_CLAIM") {
            builder = builder.roles_claim(claim.trim());
        }
        if let Some(path) = var("DCBACKUP_POLICY_FILE") {
            builder = builder.policy_file(path);
        }
        builder.build()
    }

    /// Mints an HS256 token from the local secret, as the configured issuer would: `iss`,
    /// `aud`, `sub`, `iat`, `nbf`, `exp` (now + `ttl`), the roles under the configured claim and
    /// `project_name`. Refused unless HS256 is configured.
    pub fn mint_local_token(
        &self,
        subject: &str,
        roles: &[String],
        project: &str,
        ttl: Duration,
    ) -> Result<String, MintError> {
        jwt::mint(self, subject, roles, project, ttl)
    }

    pub(super) fn algorithm_list(&self) -> String {
        let names: Vec<&str> = self.algorithms.iter().map(|a| a.as_str()).collect();
        names.join(", ")
    }
}

/// Collects an [`AuthConfig`]; [`AuthConfigBuilder::build`] checks that the parts fit.
#[derive(Debug, Clone)]
pub struct AuthConfigBuilder {
    algorithms: Vec<SigningAlgorithm>,
    hs256_secret: Option<Secret>,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    issuer: String,
    audience: String,
    leeway: Duration,
    roles_claim: String,
    jwks_min_refetch: Duration,
    jwks_max_age: Duration,
    jwks_stale_for: Duration,
    policy_file: Option<PathBuf>,
}

impl AuthConfigBuilder {
    /// The algorithms a token may be signed with; nothing else is accepted, whatever the token
    /// says.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The HS256 shared secret (its UTF-8 bytes are the key); required iff HS256 is configured.
    pub fn hs256_secret(mut self, secret: impl Into<String>) -> Self {
        self.hs256_secret = Some(Secret(secret.into()));
        self
    }

    /// A JWKS document on disk, read when the [`Authenticator`](super::Authenticator) is built.
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.jwks_file = Some(path.into());
        self
    }

    /// A JWKS URL, fetched on first use, again when the fetched set lapses (see
    /// [`AuthConfigBuilder::jwks_max_age`]) and for an unknown `kid`. Must be https; plain http
    /// is allowed for a loopback host only.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s, at most 300 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The top-level claim holding the list of roles (default `roles`).
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = claim.into();
        self
    }

    /// The least time between two fetches of the JWKS URL (default 60 s).
    pub fn jwks_min_refetch(mut self, interval: Duration) -> Self {
        self.jwks_min_refetch = interval;
        self
    }

    /// The longest a fetched JWKS is used before it is fetched again (default 900 s), even if
    /// its `Cache-Control: max-age` allows longer; a shorter max-age is honoured, down to the
    /// minimum refetch interval. This bounds how long a key removed from the JWKS validates.
    pub fn jwks_max_age(mut self, max_age: Duration) -> Self {
        self.jwks_max_age = max_age;
        self
    }

    /// How long a lapsed JWKS is still served while it cannot be fetched again (default
    /// 3600 s); after that, tokens needing it get 503 until a fetch succeeds.
    pub fn jwks_stale_for(mut self, stale_for: Duration) -> Self {
        self.jwks_stale_for = stale_for;
        self
    }

    /// A YAML or JSON file of policy rules merged over the defaults.
    pub fn policy_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy_file = Some(path.into());
        self
    }

    /// Checks that the parts fit: each configured algorithm has its key source and nothing is
    /// set that no algorithm uses.
    pub fn build(self) -> Result<AuthConfig, AuthConfigError> {
        let algorithms: BTreeSet<SigningAlgorithm> = self.algorithms.into_iter().collect();
        if algorithms.is_empty() {
            return Err(AuthConfigError::NoAlgorithms);
        }
        if self.issuer.trim().is_empty() {
            return Err(AuthConfigError::Empty("the issuer (DCBACKUP_AUTH_ISSUER)"));
        }
        if self.audience.trim().is_empty() {
            return Err(AuthConfigError::Empty(
                "the audience (DCBACKUP_AUTH_AUDIENCE)",
            ));
        }
        if self.roles_claim.is_empty() {
            return Err(AuthConfigError::Empty(
                "the roles claim (DCBACKUP_AUTH_ROLES_CLAIM)",
            ));
        }
        if RESERVED_CLAIMS.contains(&self.roles_claim.as_str()) {
            return Err(AuthConfigError::ReservedRolesClaim(self.roles_claim));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(AuthConfigError::LeewayTooLarge(self.leeway.as_secs()));
        }

        let hs256 = algorithms.contains(&SigningAlgorithm::Hs256);
        match (&self.hs256_secret, hs256) {
            (None, true) => return Err(AuthConfigError::MissingHs256Secret),
            (Some(_), false) => {
                return Err(AuthConfigError::Unused(
                    "the HS256 secret (DCBACKUP_AUTH_HS256_SECRET)",
                ))
            }
            (Some(secret), true) if secret.0.len() < MIN_HS256_SECRET_BYTES => {
                return Err(AuthConfigError::WeakHs256Secret)
            }
            _ => {}
        }

        let asymmetric = algorithms
            .iter()
            .any(|a| matches!(a, SigningAlgorithm::Rs256 | SigningAlgorithm::Es256));
        let jwks = match (self.jwks_file, self.jwks_url) {
            (Some(_), Some(_)) => return Err(AuthConfigError::ConflictingJwks),
            (Some(path), None) => Some(JwksSource::File(path)),
            (None, Some(url)) => Some(JwksSource::Url(jwks_uri(&url)?)),
            (None, None) => None,
        };
        match (&jwks, asymmetric) {
            (None, true) => return Err(AuthConfigError::MissingJwks),
            (Some(_), false) => {
                return Err(AuthConfigError::Unused(
                    "a JWKS source (DCBACKUP_AUTH_JWKS_FILE / DCBACKUP_AUTH_JWKS_URL)",
                ))
            }
            _ => {}
        }
        if matches!(jwks, Some(JwksSource::Url(_))) && self.jwks_min_refetch.is_zero() {
            return Err(AuthConfigError::ZeroRefetchInterval);
        }
        if matches!(jwks, Some(JwksSource::Url(_))) && self.jwks_max_age < self.jwks_min_refetch {
            return Err(AuthConfigError::MaxAgeBelowRefetch {
                max_age: self.jwks_max_age.as_secs(),
                min_refetch: self.jwks_min_refetch.as_secs(),
            });
        }

        Ok(AuthConfig {
            algorithms,
            hs256_secret: self.hs256_secret,
            jwks,
            issuer: self.issuer,
            audience: self.audience,
            leeway: self.leeway,
            roles_claim: self.roles_claim,
            jwks_min_refetch: self.jwks_min_refetch,
            jwks_max_age: self.jwks_max_age,
            jwks_stale_for: self.jwks_stale_for,
            policy_file: self.policy_file,
        })
    }
}

/// Keys fetched over plain http from anywhere but this host could be swapped in transit.
fn jwks_uri(url: &str) -> Result<Uri, AuthConfigError> {
    let invalid = |reason: &'static str| AuthConfigError::JwksUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url.trim().parse().map_err(|_| invalid("not a valid URL"))?;
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not allowed"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if loopback => Ok(uri),
        Some("http") => Err(invalid(
            "must be https (plain http only for a loopback host)",
        )),
        _ => Err(invalid("must be an https URL")),
    }
}

/// Why the authentication set-up is unusable; the function must not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("{0} is not set")]
    MissingVar(&'static str),
    #[error("{var}: `{value}` is not a whole number of seconds")]
    NotSeconds { var: &'static str, value: String },
    #[error("no token algorithm configured (DCBACKUP_AUTH_ALGORITHMS: HS256, RS256, ES256)")]
    NoAlgorithms,
    #[error("unknown token algorithm `{0}` (DCBACKUP_AUTH_ALGORITHMS: HS256, RS256, ES256)")]
    UnknownAlgorithm(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("the roles claim (DCBACKUP_AUTH_ROLES_CLAIM) cannot be `{0}`: that claim has another meaning")]
    ReservedRolesClaim(String),
    #[error("a leeway of {0} s is too large (DCBACKUP_AUTH_LEEWAY_SECONDS: at most 300)")]
    LeewayTooLarge(u64),
    #[error("HS256 is configured but no shared secret is set (DCBACKUP_AUTH_HS256_SECRET)")]
    MissingHs256Secret,
    #[error("the HS256 secret (DCBACKUP_AUTH_HS256_SECRET) must be at least 32 bytes long")]
    WeakHs256Secret,
    #[error("{0} is set but no configured algorithm uses it")]
    Unused(&'static str),
    #[error("RS256/ES256 are configured but no JWKS source is set (DCBACKUP_AUTH_JWKS_FILE or DCBACKUP_AUTH_JWKS_URL)")]
    MissingJwks,
    #[error("set only one of DCBACKUP_AUTH_JWKS_FILE and DCBACKUP_AUTH_JWKS_URL")]
    ConflictingJwks,
    #[error("JWKS URL `{url}` (DCBACKUP_AUTH_JWKS_URL): {reason}")]
    JwksUrl { url: String, reason: &'static str },
    #[error("the JWKS minimum refetch interval (DCBACKUP_AUTH_JWKS_MIN_REFETCH_SECONDS) must be positive")]
    ZeroRefetchInterval,
    #[error("the JWKS maximum age ({max_age} s, DCBACKUP_AUTH_JWKS_MAX_AGE_SECONDS) must be at least the minimum refetch interval ({min_refetch} s, DCBACKUP_AUTH_JWKS_MIN_REFETCH_SECONDS)")]
    MaxAgeBelowRefetch { max_age: u64, min_refetch: u64 },
    #[error("JWKS file {path}: {reason}")]
    JwksFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn env(vars: &[(&str, &str)]) -> Result<AuthConfig, AuthConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AuthConfig::from_lookup(|name| vars.get(name).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("DCBACKUP_AUTH_ISSUER", "https://issuer.test"),
        ("DCBACKUP_AUTH_AUDIENCE", "dcbackup"),
        ("DCBACKUP_AUTH_ALGORITHMS", "HS256"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars: Vec<_> = BASE
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .copied()
            .collect();
        vars.extend(extra.iter().filter(|(_, v)| !v.is_empty()).copied());
        vars
    }

    #[test]
    fn env_defaults() {
        let config = env(&with(&[("DCBACKUP_AUTH_HS256_SECRET", SECRET)])).expect("config");
        assert_eq!(config.leeway, Duration::from_secs(30));
        assert_eq!(config.roles_claim, "roles");
        assert_eq!(config.jwks_min_refetch, Duration::from_secs(60));
        assert_eq!(config.policy_file, None);
        assert_eq!(config.issuer, "https://issuer.test");
        assert_eq!(config.audience, "dcbackup");
    }

    #[test]
    fn env_reads_every_setting() {
        let config = env(&with(&[
            ("DCBACKUP_AUTH_ALGORITHMS", " rs256 , ES256,"),
            ("DCBACKUP_AUTH_JWKS_URL", "https://idp.example/jwks.json"),
            ("DCBACKUP_AUTH_LEEWAY_SECONDS", "5"),
            ("DCBACKUP_AUTH_ROLES_CLAIM", "groups"),
            ("DCBACKUP_AUTH_JWKS_MIN_REFETCH_SECONDS", "120"),
            ("DCBACKUP_POLICY_FILE", "/etc/dcbackup/policy.yaml"),
        ]))
        .expect("config");
        assert_eq!(
            config.algorithms,
            BTreeSet::from([SigningAlgorithm::Rs256, SigningAlgorithm::Es256])
        );
        assert_eq!(config.leeway, Duration::from_secs(5));
        assert_eq!(config.roles_claim, "groups");
        assert_eq!(config.jwks_min_refetch, Duration::from_secs(120));
        assert_eq!(
            config.policy_file,
            Some(PathBuf::from("/etc/dcbackup/policy.yaml"))
        );
        assert!(matches!(config.jwks, Some(JwksSource::Url(_))));
    }

    #[test]
    fn env_errors() {
        let jwks = "src/auth/testdata/jwks.json";
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                with(&[("DCBACKUP_AUTH_ALGORITHMS", "")]),
                "DCBACKUP_AUTH_ALGORITHMS is not set",
            ),
            (
                with(&[("DCBACKUP_AUTH_ISSUER", "")]),
                "DCBACKUP_AUTH_ISSUER is not set",
            ),
            (
                with(&[("DCBACKUP_AUTH_AUDIENCE", "")]),
                "DCBACKUP_AUTH_AUDIENCE is not set",
            ),
            (
                with(&[("DCBACKUP_AUTH_ALGORITHMS", "HS256,none")]),
                "unknown token algorithm `none`",
            ),
            (
                with(&[("DCBACKUP_AUTH_ALGORITHMS", " , ")]),
                "no token algorithm configured",
            ),
            (with(&[]), "no shared secret is set"),
            (
                with(&[("DCBACKUP_AUTH_HS256_SECRET", "short")]),
                "at least 32 bytes",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_ALGORITHMS", "RS256"),
                    ("DCBACKUP_AUTH_HS256_SECRET", SECRET),
                    ("DCBACKUP_AUTH_JWKS_FILE", jwks),
                ]),
                "the HS256 secret (DCBACKUP_AUTH_HS256_SECRET) is set but no configured algorithm uses it",
            ),
            (
                with(&[("DCBACKUP_AUTH_ALGORITHMS", "ES256")]),
                "no JWKS source is set",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_HS256_SECRET", SECRET),
                    ("DCBACKUP_AUTH_JWKS_FILE", jwks),
                ]),
                "a JWKS source (DCBACKUP_AUTH_JWKS_FILE / DCBACKUP_AUTH_JWKS_URL) is set but",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_ALGORITHMS", "RS256"),
                    ("DCBACKUP_AUTH_JWKS_FILE", jwks),
                    ("DCBACKUP_AUTH_JWKS_URL", "https://idp.example/jwks"),
                ]),
                "set only one of",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_ALGORITHMS", "RS256"),
                    ("DCBACKUP_AUTH_JWKS_URL", "http://idp.example/jwks"),
                ]),
                "must be https (plain http only for a loopback host)",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_ALGORITHMS", "RS256"),
                    ("DCBACKUP_AUTH_JWKS_URL", "https://user:pw@idp.example/jwks"),
                ]),
                "credentials in the URL are not allowed",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_ALGORITHMS", "RS256"),
                    ("DCBACKUP_AUTH_JWKS_URL", "/jwks"),
                ]),
                "no host",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_ALGORITHMS", "RS256"),
                    ("DCBACKUP_AUTH_JWKS_URL", "https://idp.example/jwks"),
                    ("DCBACKUP_AUTH_JWKS_MIN_REFETCH_SECONDS", "0"),
                ]),
                "must be positive",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_HS256_SECRET", SECRET),
                    ("DCBACKUP_AUTH_LEEWAY_SECONDS", "soon"),
                ]),
                "DCBACKUP_AUTH_LEEWAY_SECONDS: `soon` is not a whole number of seconds",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_HS256_SECRET", SECRET),
                    ("DCBACKUP_AUTH_LEEWAY_SECONDS", "3600"),
                ]),
                "too large",
            ),
            (
                with(&[
                    ("DCBACKUP_AUTH_HS256_SECRET", SECRET),
                    ("DCBACKUP_AUTH_ROLES_CLAIM", "sub"),
                ]),
                "cannot be `sub`",
            ),
            (
                vec![
                    ("DCBACKUP_AUTH_ISSUER", "https://issuer.test"),
                    ("DCBACKUP_AUTH_AUDIENCE", "dcbackup"),
                    ("DCBACKUP_AUTH_ALGORITHMS", "RS256"),
                    ("DCBACKUP_AUTH_JWKS_URL", "https://issuer.test/jwks"),
                    ("DCBACKUP_AUTH_JWKS_MAX_AGE_SECONDS", "30"),
                ],
                "must be at least the minimum refetch interval (60 s",
            ),
        ];
        for (vars, expected) in cases {
            match env(&vars) {
                Ok(_) => panic!("{vars:?}: accepted, expected an error with {expected:?}"),
                Err(error) => assert!(
                    error.to_string().contains(expected),
                    "{vars:?}: `{error}` does not contain {expected:?}"
                ),
            }
        }
    }

    #[test]
    fn loopback_jwks_urls_may_be_plain_http() {
        for url in [
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]:9/jwks",
            "https://idp.example/jwks",
        ] {
            assert!(jwks_uri(url).is_ok(), "{url}");
        }
    }
}
