//! The one mapping from every error a request can meet to an HTTP response:
//! `{"error": {"code", "title", "message"}}`. Internal details are logged, never sent.

use crate::auth::{AuthError, Denied};
use crate::store::{InventoryError, StoreError};
use http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;
use serde_json::json;

/// Why one subcloud of a request was not taken. Fields in key order: answers serialize it
/// straight, and must print it as a `Value` object would (keys sorted), as everywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubcloudReason {
    pub id: u64,
    pub name: String,
    pub reason: String,
    pub status: ReasonStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasonStatus {
    /// Another operation holds its slot.
    Busy,
    /// Not in a valid state for the operation.
    Invalid,
    /// Deleted while the request ran.
    Gone,
    /// Claimed, but its job could not be handed over (rolled back).
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(AuthError),
    #[error("{0}")]
    Forbidden(Denied),
    #[error("{0}")]
    NotFound(String),
    /// A method the path does not serve; `allow` lists those it does (the `Allow` header).
    #[error("{message}")]
    MethodNotAllowed { message: String, allow: String },
    #[error("{0}")]
    Conflict(String),
    #[error("Request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unprocessable(String),
    /// A request about subclouds, refused as a whole, with each subcloud's reason.
    #[error("{message}")]
    Subclouds {
        status: StatusCode,
        message: String,
        subclouds: Vec<SubcloudReason>,
    },
    #[error("A service dcbackup depends on is unavailable; try again shortly")]
    Unavailable,
    #[error("Internal error; the request id identifies it in the logs")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(e) => e.status(),
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Subclouds { status, .. } => *status,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut body = json!({
            "error": {
                "code": status.as_u16(),
                "title": status.canonical_reason().unwrap_or("Error"),
                "message": self.to_string(),
            }
        });
        if let ApiError::Subclouds { subclouds, .. } = &self {
            body["error"]["subclouds"] = json!(subclouds);
        }
        let mut response = super::json_response(status, &body);
        match self {
            ApiError::Unauthorized(e) => {
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(e.www_authenticate()),
                );
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(allow) = http::HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(http::header::ALLOW, allow);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<crate::domain::Invalid> for ApiError {
    fn from(e: crate::domain::Invalid) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store request failed");
        match e {
            StoreError::Unavailable(_) => ApiError::Unavailable,
            // The caller raced another request on the same item and lost every retry.
            StoreError::Conflict(_) => ApiError::Conflict(
                "The item changed while this request was writing it; try again".into(),
            ),
            StoreError::Failed(_) => ApiError::Internal,
        }
    }
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        use InventoryError as E;
        let message = e.to_string();
        match e {
            E::SubcloudNotFound(_) | E::GroupNotFound(_) | E::ScheduleNotFound(_) => {
                ApiError::NotFound(message)
            }
            E::UnknownGroup(_)
            | E::DefaultGroupProtected(_)
            | E::SubcloudManaged(_)
            | E::SubcloudDeploying { .. }
            | E::NoAgentUrl => ApiError::BadRequest(message),
            E::SubcloudExists(_)
            | E::GroupExists(_)
            | E::ScheduleExists(_)
            | E::GroupNotEmpty { .. }
            | E::Contended(_) => ApiError::Conflict(message),
            // Listed under `error.subclouds` like every other refusal about a subcloud.
            E::Busy { id, name, .. } => ApiError::Subclouds {
                status: StatusCode::CONFLICT,
                subclouds: vec![SubcloudReason {
                    id,
                    name: name.to_string(),
                    status: ReasonStatus::Busy,
                    reason: message.clone(),
                }],
                message,
            },
            E::Store(store) => store.into(),
        }
    }
}

impl From<crate::operations::StartError> for ApiError {
    fn from(e: crate::operations::StartError) -> Self {
        use crate::operations::StartError as E;
        // dcmanager's words for the API; the scheduler records the group's name too.
        match e {
            E::Inventory(InventoryError::GroupNotFound(_)) => {
                ApiError::NotFound("Group not found".into())
            }
            E::Inventory(e) => e.into(),
            E::EmptyGroup(_) => ApiError::BadRequest("No subclouds present in group".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_prints_as_a_value_object_would() {
        let reason = SubcloudReason {
            id: 1,
            name: "subcloud1".into(),
            reason: "busy elsewhere".into(),
            status: ReasonStatus::Busy,
        };
        let straight = serde_json::to_string(&reason).unwrap();
        let as_value = serde_json::to_value(&reason).unwrap().to_string();
        assert_eq!(straight, as_value);
    }
}
