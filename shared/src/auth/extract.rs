//! Where a request carries its token: `Authorization: Bearer <t>`, `X-Auth-Token: <t>` (what
//! dcmanager clients send) or `OIDC-Token: <t>`. Any of them may be present, each even more than
//! once, as long as they all carry the same token: a request whose headers disagree is refused
//! rather than guessing which one the caller meant. Size is checked here, before any decoding.

use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, HeaderValue};

use super::AuthError;

/// Real tokens are a few KiB at most; a larger one is refused before it is parsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

const X_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");
const OIDC_TOKEN: HeaderName = HeaderName::from_static("oidc-token");

/// The request's token, not yet verified.
pub fn token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut found = None;
    for value in headers.get_all(AUTHORIZATION) {
        // Other schemes (Basic, AWS SigV4…) are not ours to judge.
        if let Some(token) = bearer(value)? {
            agree(&mut found, token)?;
        }
    }
    for name in [X_AUTH_TOKEN, OIDC_TOKEN] {
        for value in headers.get_all(name) {
            agree(&mut found, text(value)?)?;
        }
    }
    found.ok_or(AuthError::Missing)
}

fn agree<'a>(found: &mut Option<&'a str>, token: &'a str) -> Result<(), AuthError> {
    let token = checked(token)?;
    match found {
        Some(earlier) if *earlier != token => Err(AuthError::Conflicting),
        _ => {
            *found = Some(token);
            Ok(())
        }
    }
}

fn text(value: &HeaderValue) -> Result<&str, AuthError> {
    if value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
        return Err(AuthError::TooLarge);
    }
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| AuthError::Malformed)
}

/// The credentials of a `Bearer` authorization (scheme matched case-insensitively, RFC 9110
/// §11.1), or `None` for another scheme.
fn bearer(value: &HeaderValue) -> Result<Option<&str>, AuthError> {
    let value = text(value)?;
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    Ok(scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credentials.trim()))
}

fn checked(token: &str) -> Result<&str, AuthError> {
    if token.is_empty() {
        Err(AuthError::Malformed)
    } else if token.len() > MAX_TOKEN_BYTES {
        Err(AuthError::TooLarge)
    } else {
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(value).expect("value"),
            );
        }
        headers
    }

    /// Name, headers, expected outcome.
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a [u8])>,
        Result<&'a str, AuthError>,
    );

    #[test]
    fn extraction() {
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        let just_fits = "a".repeat(MAX_TOKEN_BYTES);
        let huge = "a".repeat(64 * 1024);
        let cases: Vec<Case> = vec![
            ("no header", vec![], Err(AuthError::Missing)),
            ("bearer", vec![("Authorization", b"Bearer t1")], Ok("t1")),
            (
                "scheme in any case, extra spaces",
                vec![("authorization", b"bEARER   t1 ")],
                Ok("t1"),
            ),
            ("x-auth-token", vec![("X-Auth-Token", b"t1")], Ok("t1")),
            ("oidc-token", vec![("OIDC-Token", b" t1 ")], Ok("t1")),
            (
                "all three agree",
                vec![
                    ("Authorization", b"Bearer t1"),
                    ("X-Auth-Token", b"t1"),
                    ("OIDC-Token", b"t1"),
                ],
                Ok("t1"),
            ),
            (
                "bearer and x-auth-token disagree",
                vec![("Authorization", b"Bearer t1"), ("X-Auth-Token", b"t2")],
                Err(AuthError::Conflicting),
            ),
            (
                "x-auth-token and oidc-token disagree",
                vec![("X-Auth-Token", b"t1"), ("OIDC-Token", b"t2")],
                Err(AuthError::Conflicting),
            ),
            (
                "repeated x-auth-token disagrees",
                vec![("X-Auth-Token", b"t1"), ("X-Auth-Token", b"t2")],
                Err(AuthError::Conflicting),
            ),
            (
                "repeated bearer disagrees",
                vec![
                    ("Authorization", b"Bearer t1"),
                    ("Authorization", b"Bearer t2"),
                ],
                Err(AuthError::Conflicting),
            ),
            (
                "another scheme only",
                vec![("Authorization", b"Basic dXNlcjpwdw==")],
                Err(AuthError::Missing),
            ),
            (
                "another scheme beside a token",
                vec![
                    ("Authorization", b"Basic dXNlcjpwdw=="),
                    ("X-Auth-Token", b"t1"),
                ],
                Ok("t1"),
            ),
            (
                "bearer without a token",
                vec![("Authorization", b"Bearer")],
                Err(AuthError::Malformed),
            ),
            (
                "empty x-auth-token",
                vec![("X-Auth-Token", b"")],
                Err(AuthError::Malformed),
            ),
            (
                "not visible ASCII",
                vec![("X-Auth-Token", b"t\xff1")],
                Err(AuthError::Malformed),
            ),
            (
                "too large",
                vec![("Authorization", big.as_bytes())],
                Err(AuthError::TooLarge),
            ),
            (
                "64 KiB x-auth-token",
                vec![("X-Auth-Token", huge.as_bytes())],
                Err(AuthError::TooLarge),
            ),
            (
                "largest allowed",
                vec![("X-Auth-Token", just_fits.as_bytes())],
                Ok(just_fits.as_str()),
            ),
        ];
        for (name, pairs, expected) in cases {
            assert_eq!(token(&headers(&pairs)), expected, "{name}");
        }
    }
}
