//! JWT verification and local minting. The algorithms, issuer, audience and leeway come from
//! configuration and nothing in a token can widen them: the header's `alg` only picks one of the
//! configured algorithms, and its key is the shared secret (HS256) or a JWKS key of that same
//! algorithm (RS256, ES256), which `auth/jwks.rs` reads, fetches and caches.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::jwks::{Clock, Jwks};
use super::{AuthConfig, AuthConfigError, AuthError, Principal, SigningAlgorithm};

/// Checks tokens against the configuration it was built from.
pub(crate) struct Verifier {
    /// One per configured algorithm, each built from configuration alone.
    validations: Vec<(Algorithm, Validation)>,
    secret: Option<Arc<DecodingKey>>,
    pub(super) jwks: Option<Arc<Jwks>>,
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
        let jwks = Jwks::from_config(config, &algorithms, clock)?.map(Arc::new);
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
pub(super) fn rejected(outcome: AuthError, reason: &'static str) -> AuthError {
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
pub(super) mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use http::header::AUTHORIZATION;
    use http::{HeaderMap, HeaderValue, StatusCode};
    use jsonwebtoken::get_current_timestamp;
    use serde_json::json;

    use super::*;
    use crate::auth::Authenticator;

    pub(in crate::auth) const ISSUER: &str = "https://issuer.test";
    pub(in crate::auth) const AUDIENCE: &str = "dcbackup";
    pub(in crate::auth) const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
    pub(in crate::auth) const JWKS: &str = include_str!("testdata/jwks.json");
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

    pub(in crate::auth) fn claims() -> Value {
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

    pub(in crate::auth) fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
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

    pub(in crate::auth) fn rs256(claims: &Value) -> String {
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

    pub(in crate::auth) fn headers(token: &str) -> HeaderMap {
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
}
