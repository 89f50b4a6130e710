//! Worker tokens as the worker mints them: HS256 JWTs signed with the secret the agent
//! shares with the worker, addressed to one subcloud (`aud`) and living at most ten minutes.
//! The agent verifies them (`agent/src/auth.rs`) against the same constants. Neither tokens
//! nor the secret are ever logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The `iss` of every worker token.
pub const ISSUER: &str = "dcbackup-worker";
/// The longest lifetime (`exp - iat`) a worker token may have.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// The shortest secret accepted: HS256 is only as strong as its key.
pub const MIN_SECRET_BYTES: usize = 32;
/// The `sub` of tokens minted by [`mint_worker_token`].
pub const WORKER_SUBJECT: &str = "dcbackup-worker";

/// The shared HS256 key. Its `Debug` shows only its length.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the secret is {len} bytes; at least {MIN_SECRET_BYTES} are needed")]
    TooShort { len: usize },
}

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Result<Secret, SecretError> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort { len: bytes.len() });
        }
        Ok(Secret(bytes))
    }

    /// Reads a secret file: its bytes, less one trailing line break (editors add one).
    pub fn read(path: &Path) -> Result<Secret, SecretError> {
        let mut bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        if bytes.ends_with(b"\r\n") {
            bytes.truncate(bytes.len() - 2);
        } else if bytes.ends_with(b"\n") {
            bytes.truncate(bytes.len() - 1);
        }
        Secret::new(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Why a token was not minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the secret is {len} bytes; at least {MIN_SECRET_BYTES} are needed")]
    ShortSecret { len: usize },
    #[error("a token needs a subcloud name for its audience")]
    NoAudience,
    #[error("a token lives 1 s to {max} s, not {0:?}", max = MAX_TOKEN_LIFETIME.as_secs())]
    Lifetime(Duration),
    #[error("cannot sign the token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
}

/// A token the agent of `subcloud` accepts for `ttl` (at most ten minutes).
pub fn mint_worker_token(
    secret: &[u8],
    subcloud: &str,
    ttl: Duration,
) -> Result<String, MintError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(MintError::ShortSecret { len: secret.len() });
    }
    if subcloud.is_empty() {
        return Err(MintError::NoAudience);
    }
    if ttl.as_secs() == 0 || ttl > MAX_TOKEN_LIFETIME {
        return Err(MintError::Lifetime(ttl));
    }
    let iat = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims {
        iss: ISSUER,
        aud: subcloud,
        sub: WORKER_SUBJECT,
        iat,
        exp: iat + ttl.as_secs(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret of at least 32 bytes!!";

    #[test]
    fn refuses_to_mint_what_the_agent_would_refuse() {
        let minute = Duration::from_secs(60);
        assert!(matches!(
            mint_worker_token(b"short", "subcloud1", minute),
            Err(MintError::ShortSecret { len: 5 })
        ));
        assert!(matches!(
            mint_worker_token(SECRET, "", minute),
            Err(MintError::NoAudience)
        ));
        assert!(matches!(
            mint_worker_token(SECRET, "subcloud1", Duration::from_secs(601)),
            Err(MintError::Lifetime(_))
        ));
    }

    #[test]
    fn secrets_are_never_shown() {
        let secret = Secret::new(SECRET.to_vec()).expect("secret");
        assert_eq!(format!("{secret:?}"), "Secret(36 bytes)");
        assert!(matches!(
            Secret::new(vec![1; 31]),
            Err(SecretError::TooShort { len: 31 })
        ));
    }
}
