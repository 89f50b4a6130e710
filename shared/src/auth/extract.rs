//! Where a request carries its token: `Authorization: Bearer <t>`, `X-Auth-Token: <t>` (what
//! dcmanager clients send) or `OIDC-Token: <t>`. Any of them may be present, each even more than
//! once, as long as they all carry the same token: a request whose headers disagree is refused
//! rather than guessing which one the caller meant. API Gateway HTTP APIs join a repeated header
//! into one value with commas (`<t>, <t>`); a JWT holds no comma, so each comma-separated element
//! counts as one occurrence. Size is checked here, before any decoding.

use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, HeaderValue};

use super::AuthError;

/// Real tokens are a few KiB at most; a larger one is refused before it is parsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// A header joined from repeats holds a few copies of one token at most.
const MAX_HEADER_BYTES: usize = 4 * (MAX_TOKEN_BYTES + "Bearer , ".len());

const X_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");
const OIDC_TOKEN: HeaderName = HeaderName::from_static("oidc-token");

/// The request's token, not yet verified.
pub fn token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut found = None;
    for value in headers.get_all(AUTHORIZATION) {
        for element in elements(value)? {
            // Other schemes (Basic, AWS SigV4…) are not ours to judge.
            if let Some(token) = bearer(element) {
                agree(&mut found, token)?;
            }
        }
    }
    for name in [X_AUTH_TOKEN, OIDC_TOKEN] {
        for value in headers.get_all(name) {
            for element in elements(value)? {
                agree(&mut found, element)?;
            }
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

/// The comma-separated elements of a header value (RFC 9110 §5.3), trimmed.
fn elements(value: &HeaderValue) -> Result<impl Iterator<Item = &str>, AuthError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(AuthError::TooLarge);
    }
    let text = value.to_str().map_err(|_| AuthError::Malformed)?;
    Ok(text.split(',').map(str::trim))
}

/// The credentials of a `Bearer` authorization (scheme matched case-insensitively, RFC 9110
/// §11.1), or `None` for another scheme.
fn bearer(element: &str) -> Option<&str> {
    let (scheme, credentials) = element.split_once(' ').unwrap_or((element, ""));
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credentials.trim())
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
        let joined_big = format!("{0}, {0}", "a".repeat(MAX_TOKEN_BYTES + 1));
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
                "x-auth-token sent twice, joined by API Gateway",
                vec![("X-Auth-Token", b"t1, t1")],
                Ok("t1"),
            ),
            (
                "joined without a space",
                vec![("X-Auth-Token", b"t1,t1")],
                Ok("t1"),
            ),
            (
                "bearer sent twice, joined",
                vec![("Authorization", b"Bearer t1, Bearer t1")],
                Ok("t1"),
            ),
            (
                "joined oidc-token beside a bearer",
                vec![("Authorization", b"Bearer t1"), ("OIDC-Token", b"t1,t1")],
                Ok("t1"),
            ),
            (
                "joined values disagree",
                vec![("X-Auth-Token", b"t1, t2")],
                Err(AuthError::Conflicting),
            ),
            (
                "joined bearers disagree",
                vec![("Authorization", b"Bearer t1,Bearer t2")],
                Err(AuthError::Conflicting),
            ),
            (
                "joined with an empty element",
                vec![("X-Auth-Token", b"t1, ")],
                Err(AuthError::Malformed),
            ),
            (
                "another scheme joined with a bearer",
                vec![("Authorization", b"Basic dXNlcjpwdw==, Bearer t1")],
                Ok("t1"),
            ),
            (
                "joined copies of a token too large",
                vec![("X-Auth-Token", joined_big.as_bytes())],
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
