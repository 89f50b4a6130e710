//! `Idempotency-Key` on the subcloud-backup routes (SPEC §2): a command runs once per key, and
//! the same key with the same request within the hold gets the first answer again. The key is
//! scoped to the route and the caller, so one caller's key never replays another's answer.
//! The store keeps each key's state (`store/idempotency.rs`); this module decides what a
//! request does with it.

use super::routes::Call;
use super::{backup, empty_response, ApiError, Command, Route};
use crate::domain::{digest_hex, epoch_now};
use crate::store::Begin;
use http::{HeaderMap, StatusCode};
use lambda_http::{Body, Response};

/// A request's `Idempotency-Key`, scoped to its route and caller: the SHA-256 (hex) of the
/// route's function, the caller's subject and the key as sent (1 to 255 visible ASCII
/// characters). What the store and the operation records keep; never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The request's key, if it sent one; a header that is not 1 to 255 visible ASCII
    /// characters is a 400.
    pub fn from_headers(
        headers: &HeaderMap,
        route: Route,
        subject: &str,
    ) -> Result<Option<IdempotencyKey>, ApiError> {
        let Some(key) = headers.get("idempotency-key") else {
            return Ok(None);
        };
        let key = key
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255)
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
                )
            })?;
        // Length-prefixed, so no subject/key split can collide with another caller's.
        Ok(Some(IdempotencyKey(digest_hex(&format!(
            "{}:{}{subject}:{}{key}",
            route.function(),
            subject.len(),
            key.len()
        )))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What to do with a request that carries a key, from what the store holds for it.
enum NextAction {
    /// The first request with this key: run it, then keep its answer.
    Run,
    /// Answer what the first request answered.
    Replay(Response<Body>),
}

/// Runs a subcloud-backup command once per `Idempotency-Key`: the same key and request
/// within the hold (`App::idempotency_hold_seconds`) get the first answer again; the same
/// key with another request is a 422, and while the first is still running a 409.
pub(super) async fn run(call: &Call<'_>, command: &Command) -> Result<Response<Body>, ApiError> {
    let (app, principal) = (call.app, call.principal);
    let Some(key) =
        IdempotencyKey::from_headers(call.req.headers(), call.route, &principal.subject)?
    else {
        return backup::execute(app, principal, command, None).await;
    };
    let fingerprint = command.fingerprint();
    if let NextAction::Replay(answer) = begin(call, &key, &fingerprint).await? {
        return Ok(answer);
    }
    let response = match backup::execute(app, principal, command, Some(key.as_str())).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    if response.status().is_server_error() {
        app.inventory
            .abandon_idempotent(key.as_str(), &fingerprint)
            .await?;
    } else {
        let bytes: &[u8] = response.body().as_ref();
        let body = String::from_utf8_lossy(bytes).into_owned();
        app.inventory
            .finish_idempotent(
                key.as_str(),
                &fingerprint,
                response.status().as_u16(),
                &body,
                epoch_now(),
            )
            .await?;
    }
    Ok(response)
}

/// Holds the key for this request, or says why it cannot run.
async fn begin(
    call: &Call<'_>,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<NextAction, ApiError> {
    let app = call.app;
    match app
        .inventory
        .begin_idempotent(
            key.as_str(),
            fingerprint,
            epoch_now(),
            app.idempotency_hold_seconds,
        )
        .await?
    {
        Begin::New => Ok(NextAction::Run),
        Begin::Replay { status, body } => {
            let status = StatusCode::from_u16(status).map_err(|_| ApiError::Internal)?;
            Ok(NextAction::Replay(if body.is_empty() {
                empty_response(status)
            } else {
                Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::Text(body))
                    .map_err(|_| ApiError::Internal)?
            }))
        }
        Begin::Mismatch => Err(ApiError::Unprocessable(
            "This Idempotency-Key was used with a different request; use a new key".into(),
        )),
        Begin::InProgress => Err(ApiError::Conflict(
            "A request with this Idempotency-Key is still being processed; retry shortly".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(value: &str, route: Route, subject: &str) -> Result<Option<IdempotencyKey>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", value.parse().expect("header value"));
        IdempotencyKey::from_headers(&headers, route, subject)
    }

    #[test]
    fn keys_are_scoped_to_route_and_caller_and_checked() {
        let route = Route::BackupCreate;
        let first = key("k1", route, "alice").unwrap().expect("a key");
        assert_eq!(first, key("k1", route, "alice").unwrap().expect("a key"));
        assert_eq!(first.as_str().len(), 64, "a SHA-256 in hex");
        assert!(!first.as_str().contains("k1"));
        assert_ne!(
            first,
            key("k1", Route::BackupRestore, "alice").unwrap().unwrap()
        );
        assert_ne!(first, key("k1", route, "bob").unwrap().unwrap());
        // A subject/key split cannot collide: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            key("c", route, "ab").unwrap().unwrap(),
            key("bc", route, "a").unwrap().unwrap()
        );
        assert!(
            IdempotencyKey::from_headers(&HeaderMap::new(), route, "alice")
                .unwrap()
                .is_none()
        );
        for bad in ["", &"k".repeat(256)] {
            assert!(
                matches!(key(bad, route, "alice"), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(key(&"k".repeat(255), route, "alice").unwrap().is_some());
    }
}
