//! Checking worker tokens (minted by `dcbackup_protocol::mint_worker_token`): HS256 JWTs
//! signed with the secret the agent shares with the worker. The algorithm, issuer and audience are fixed here, never taken from the token; `exp`, `iat`,
//! `iss`, `aud` and `sub` are all required (jsonwebtoken checks `iss`/`aud` only when present
//! unless told to require them), and a token may live at most ten minutes, so a leaked one is
//! soon worthless. Neither tokens nor the secret are ever logged.

use dcbackup_protocol::{Secret, ISSUER, MAX_TOKEN_LIFETIME};
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Clock skew tolerated between the worker and the subcloud.
const LEEWAY_SECONDS: u64 = 30;
/// A worker token is a few hundred bytes; anything much larger is not one.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a request's token was refused; the message is what the caller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("expired token")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

#[derive(Deserialize)]
struct VerifiedClaims {
    sub: String,
    iat: u64,
    exp: u64,
}

/// Checks worker tokens addressed to this agent.
pub(crate) struct Verifier {
    /// The current key, then the previous one during a rotation.
    keys: Vec<DecodingKey>,
    validation: Validation,
}

impl Verifier {
    /// A verifier accepting tokens signed with any of `secrets` (the current key first).
    pub(crate) fn new(secrets: &[Secret], audience: &str) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Verifier {
            keys: secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.as_bytes()))
                .collect(),
            validation,
        }
    }

    /// The token's subject, if the `Authorization` header carries a token for this agent.
    pub(crate) fn verify(&self, authorization: Option<&HeaderValue>) -> Result<String, AuthError> {
        let Some(value) = authorization else {
            return Err(rejected(AuthError::Missing, "no Authorization header"));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| rejected(AuthError::Missing, "not a Bearer Authorization header"))?;
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(rejected(AuthError::Invalid, "empty or oversized token"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| rejected(AuthError::Invalid, "undecodable header (or alg none)"))?;
        if header.alg != Algorithm::HS256 {
            return Err(rejected(AuthError::Invalid, "algorithm is not HS256"));
        }
        // No header extension is understood, so one marked critical must fail (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err(rejected(AuthError::Invalid, "critical header extension"));
        }
        // A signature that no key verifies is refused; any other verdict is the first key's
        // whose signature matched.
        let decoded = self
            .keys
            .iter()
            .map(|key| jsonwebtoken::decode::<VerifiedClaims>(token, key, &self.validation))
            .find(|d| !matches!(d, Err(e) if *e.kind() == ErrorKind::InvalidSignature))
            .unwrap_or_else(|| Err(ErrorKind::InvalidSignature.into()));
        let claims = decoded
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => rejected(AuthError::Expired, "expired"),
                ErrorKind::InvalidSignature => rejected(AuthError::Invalid, "bad signature"),
                ErrorKind::InvalidIssuer => rejected(AuthError::Invalid, "wrong issuer"),
                ErrorKind::InvalidAudience => rejected(AuthError::Invalid, "wrong audience"),
                ErrorKind::MissingRequiredClaim(_) => {
                    rejected(AuthError::Invalid, "missing required claim")
                }
                ErrorKind::ImmatureSignature => rejected(AuthError::Invalid, "not yet valid"),
                _ => rejected(AuthError::Invalid, "undecodable or ill-typed claims"),
            })?
            .claims;
        if claims.sub.is_empty() {
            return Err(rejected(AuthError::Invalid, "empty subject"));
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > MAX_TOKEN_LIFETIME.as_secs() {
            return Err(rejected(AuthError::Invalid, "lifetime over ten minutes"));
        }
        if claims.iat > jsonwebtoken::get_current_timestamp() + LEEWAY_SECONDS {
            return Err(rejected(AuthError::Invalid, "issued in the future"));
        }
        Ok(claims.sub)
    }
}

/// Logs why a token was refused (never the token) and returns the public outcome.
fn rejected(outcome: AuthError, reason: &'static str) -> AuthError {
    tracing::info!(reason, "token rejected");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use dcbackup_protocol::{mint_worker_token, WORKER_SUBJECT};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};
    use std::time::Duration;

    const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";

    fn verifier() -> Verifier {
        Verifier::new(
            &[Secret::new(SECRET.to_vec()).expect("secret")],
            "subcloud1",
        )
    }

    fn check(token: &str) -> Result<String, AuthError> {
        let header = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
        verifier().verify(Some(&header))
    }

    fn claims(overrides: Value) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims =
            json!({"iss": ISSUER, "aud": "subcloud1", "sub": "w", "iat": now, "exp": now + 300});
        for (key, value) in overrides.as_object().expect("object") {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    }

    fn sign(claims: &Value) -> String {
        let key = EncodingKey::from_secret(SECRET);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("signed")
    }

    #[test]
    fn accepts_minted_tokens() {
        let token = mint_worker_token(SECRET, "subcloud1", Duration::from_secs(60)).expect("mint");
        assert_eq!(check(&token), Ok(WORKER_SUBJECT.to_owned()));
        let lowercase = HeaderValue::from_str(&format!("bearer {token}")).expect("header");
        assert!(verifier().verify(Some(&lowercase)).is_ok());
    }

    #[test]
    fn accepts_the_previous_key_during_a_rotation_and_checks_it_as_strictly() {
        const NEXT: &[u8] = b"the rotated-in secret, 32+ bytes long";
        let minute = Duration::from_secs(60);
        let rotating = Verifier::new(
            &[
                Secret::new(NEXT.to_vec()).expect("secret"),
                Secret::new(SECRET.to_vec()).expect("secret"),
            ],
            "subcloud1",
        );
        let verify = |verifier: &Verifier, token: &str| {
            let header = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
            verifier.verify(Some(&header))
        };
        let old = mint_worker_token(SECRET, "subcloud1", minute).expect("mint");
        let new = mint_worker_token(NEXT, "subcloud1", minute).expect("mint");
        assert!(verify(&rotating, &old).is_ok(), "previous key accepted");
        assert!(verify(&rotating, &new).is_ok(), "current key accepted");
        assert_eq!(verify(&verifier(), &new), Err(AuthError::Invalid));
        let other_audience = mint_worker_token(SECRET, "subcloud2", minute).expect("mint");
        assert_eq!(verify(&rotating, &other_audience), Err(AuthError::Invalid));
        let expired = sign(&claims(json!({"iat": 1000, "exp": 1100})));
        assert_eq!(verify(&rotating, &expired), Err(AuthError::Expired));
        let unknown = mint_worker_token(
            b"neither the current nor the previous key",
            "subcloud1",
            minute,
        )
        .expect("mint");
        assert_eq!(verify(&rotating, &unknown), Err(AuthError::Invalid));
    }

    #[test]
    fn refuses_bad_claims() {
        let now = jsonwebtoken::get_current_timestamp();
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let cases: Vec<(&str, String, AuthError)> = vec![
            (
                "wrong aud",
                sign(&claims(json!({"aud": "subcloud2"}))),
                AuthError::Invalid,
            ),
            (
                "wrong iss",
                sign(&claims(json!({"iss": "someone"}))),
                AuthError::Invalid,
            ),
            (
                "no iss",
                sign(&claims(json!({"iss": null}))),
                AuthError::Invalid,
            ),
            (
                "no aud",
                sign(&claims(json!({"aud": null}))),
                AuthError::Invalid,
            ),
            (
                "no sub",
                sign(&claims(json!({"sub": null}))),
                AuthError::Invalid,
            ),
            (
                "empty sub",
                sign(&claims(json!({"sub": ""}))),
                AuthError::Invalid,
            ),
            (
                "no exp",
                sign(&claims(json!({"exp": null}))),
                AuthError::Invalid,
            ),
            (
                "no iat",
                sign(&claims(json!({"iat": null}))),
                AuthError::Invalid,
            ),
            (
                "expired",
                sign(&claims(json!({"iat": now - 400, "exp": now - 100}))),
                AuthError::Expired,
            ),
            (
                "eleven minutes",
                sign(&claims(json!({"exp": now + 660}))),
                AuthError::Invalid,
            ),
            (
                "issued in the future",
                sign(&claims(json!({"iat": now + 300, "exp": now + 600}))),
                AuthError::Invalid,
            ),
            (
                "not yet valid",
                sign(&claims(json!({"nbf": now + 300}))),
                AuthError::Invalid,
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64(&json!({"alg": "none"})),
                    b64(&claims(json!({})))
                ),
                AuthError::Invalid,
            ),
            ("garbage", "abc.def.ghi".to_owned(), AuthError::Invalid),
        ];
        for (name, token, expected) in cases {
            assert_eq!(check(&token), Err(expected), "{name}");
        }
        assert_eq!(verifier().verify(None), Err(AuthError::Missing));
        let basic = HeaderValue::from_static("Basic dXNlcjpwYXNz");
        assert_eq!(verifier().verify(Some(&basic)), Err(AuthError::Missing));
    }
}
