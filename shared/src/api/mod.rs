//! The HTTP API: one `Route` per Lambda function, and `handle`, the handler every function
//! runs. A route knows its method, its path pattern and its policy rule; `handle` checks
//! those, parses the request into a typed command, runs it and renders the answer.

mod error;
mod fields;
mod groups;
mod subclouds;

pub use error::ApiError;
pub use fields::Fields;

use crate::auth::{policy::rules, Authenticator, Principal};
use crate::domain::Ref;
use crate::store::Inventory;
use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use std::sync::Arc;

/// Everything a handler needs, built once per cold start.
#[derive(Debug, Clone)]
pub struct App {
    pub auth: Arc<Authenticator>,
    pub inventory: Inventory,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    SubcloudsList,
    SubcloudsRegister,
    SubcloudsShow,
    SubcloudsUpdate,
    SubcloudsDelete,
    GroupsList,
    GroupsCreate,
    GroupsShow,
    GroupsUpdate,
    GroupsDelete,
    GroupsMembers,
}

impl Route {
    pub const ALL: [Route; 11] = [
        Route::SubcloudsList,
        Route::SubcloudsRegister,
        Route::SubcloudsShow,
        Route::SubcloudsUpdate,
        Route::SubcloudsDelete,
        Route::GroupsList,
        Route::GroupsCreate,
        Route::GroupsShow,
        Route::GroupsUpdate,
        Route::GroupsDelete,
        Route::GroupsMembers,
    ];

    /// The Lambda function (and crate under `functions/`) serving this route.
    pub fn function(self) -> &'static str {
        match self {
            Route::SubcloudsList => "subclouds-list",
            Route::SubcloudsRegister => "subclouds-register",
            Route::SubcloudsShow => "subclouds-show",
            Route::SubcloudsUpdate => "subclouds-update",
            Route::SubcloudsDelete => "subclouds-delete",
            Route::GroupsList => "groups-list",
            Route::GroupsCreate => "groups-create",
            Route::GroupsShow => "groups-show",
            Route::GroupsUpdate => "groups-update",
            Route::GroupsDelete => "groups-delete",
            Route::GroupsMembers => "groups-members",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Route::SubcloudsList | Route::SubcloudsShow => Method::GET,
            Route::GroupsList | Route::GroupsShow | Route::GroupsMembers => Method::GET,
            Route::SubcloudsRegister | Route::GroupsCreate => Method::POST,
            Route::SubcloudsUpdate | Route::GroupsUpdate => Method::PATCH,
            Route::SubcloudsDelete | Route::GroupsDelete => Method::DELETE,
        }
    }

    /// The policy rule a caller must pass. A subcloud update that only manages or unmanages
    /// needs the weaker `manage_unmanage` rule instead (checked once the body is parsed).
    pub fn policy_rule(self) -> &'static str {
        match self {
            Route::SubcloudsList | Route::SubcloudsShow => rules::SUBCLOUDS_GET,
            Route::SubcloudsRegister => rules::SUBCLOUDS_CREATE,
            Route::SubcloudsUpdate => rules::SUBCLOUDS_MODIFY,
            Route::SubcloudsDelete => rules::SUBCLOUDS_DELETE,
            Route::GroupsList | Route::GroupsShow | Route::GroupsMembers => {
                rules::SUBCLOUD_GROUPS_GET
            }
            Route::GroupsCreate => rules::SUBCLOUD_GROUPS_CREATE,
            Route::GroupsUpdate => rules::SUBCLOUD_GROUPS_MODIFY,
            Route::GroupsDelete => rules::SUBCLOUD_GROUPS_DELETE,
        }
    }

    /// The path, with `{ref}` where a subcloud or group name or id goes.
    pub fn pattern(self) -> &'static str {
        match self {
            Route::SubcloudsList | Route::SubcloudsRegister => "/v1.0/subclouds",
            Route::SubcloudsShow | Route::SubcloudsUpdate | Route::SubcloudsDelete => {
                "/v1.0/subclouds/{ref}"
            }
            Route::GroupsList | Route::GroupsCreate => "/v1.0/subcloud-groups",
            Route::GroupsShow | Route::GroupsUpdate | Route::GroupsDelete => {
                "/v1.0/subcloud-groups/{ref}"
            }
            Route::GroupsMembers => "/v1.0/subcloud-groups/{ref}/subclouds",
        }
    }

    /// The `{ref}` of a request path. The pattern is matched against the end of the path,
    /// so an API Gateway stage prefix does not matter; a segment is percent-decoded.
    fn path_ref(self, path: &str) -> Result<Option<Ref>, ApiError> {
        let not_found = || ApiError::NotFound(format!("No route for {path}"));
        let pattern: Vec<&str> = self.pattern().trim_matches('/').split('/').collect();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        if segments.len() < pattern.len() {
            return Err(not_found());
        }
        let tail = &segments[segments.len() - pattern.len()..];
        let mut found = None;
        for (want, got) in pattern.iter().zip(tail) {
            if *want == "{ref}" {
                let decoded = percent_decode(got).ok_or_else(not_found)?;
                let field = if self.function().starts_with("groups") {
                    "group"
                } else {
                    "subcloud"
                };
                found = Some(Ref::parse(field, &decoded).map_err(|_| match field {
                    "group" => ApiError::NotFound(format!("Subcloud group not found: {decoded}")),
                    _ => ApiError::NotFound(format!("Subcloud not found: {decoded}")),
                })?);
            } else if want != got {
                return Err(not_found());
            }
        }
        Ok(found)
    }
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body.to_string()))
        .expect("status and header are valid")
}

pub(crate) fn empty_response(status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::Empty)
        .expect("status is valid")
}

/// Serves one request on one route. Never fails: every error becomes its HTTP answer. Log
/// lines carry the Lambda request id through the runtime's span.
pub async fn handle(app: &App, route: Route, req: Request) -> Response<Body> {
    let response = match serve(app, route, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    tracing::info!(
        function = route.function(),
        status = response.status().as_u16(),
        "request served"
    );
    response
}

async fn serve(app: &App, route: Route, req: Request) -> Result<Response<Body>, ApiError> {
    if req.method() != route.method() {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} is not allowed on {}; use {}",
            req.method(),
            route.pattern(),
            route.method()
        )));
    }
    let principal = app
        .auth
        .authenticate(req.headers())
        .await
        .map_err(ApiError::Unauthorized)?;
    authorize_route(app, route, &principal)?;
    let target = route.path_ref(req.uri().path())?;
    let body: &[u8] = req.body().as_ref();
    if body.len() > app.max_body_bytes {
        return Err(ApiError::PayloadTooLarge(app.max_body_bytes));
    }
    let target = || target.clone().expect("routes with {ref} always capture it");
    match route {
        Route::SubcloudsList => subclouds::list(app).await,
        Route::SubcloudsRegister => subclouds::register(app, body).await,
        Route::SubcloudsShow => subclouds::show(app, &target()).await,
        Route::SubcloudsUpdate => subclouds::update(app, &principal, &target(), body).await,
        Route::SubcloudsDelete => subclouds::delete(app, &target()).await,
        Route::GroupsList => groups::list(app).await,
        Route::GroupsCreate => groups::create(app, body).await,
        Route::GroupsShow => groups::show(app, &target()).await,
        Route::GroupsUpdate => groups::update(app, &target(), body).await,
        Route::GroupsDelete => groups::delete(app, &target()).await,
        Route::GroupsMembers => groups::members(app, &target()).await,
    }
}

/// Checks the route's rule before anything is read. A subcloud update may instead pass on
/// `manage_unmanage` alone; the handler then checks the rule its parsed command needs.
fn authorize_route(app: &App, route: Route, principal: &Principal) -> Result<(), ApiError> {
    let denied = match app.auth.authorize(route.policy_rule(), principal) {
        Ok(()) => return Ok(()),
        Err(denied) => denied,
    };
    if route == Route::SubcloudsUpdate
        && app
            .auth
            .authorize(rules::SUBCLOUDS_MANAGE_UNMANAGE, principal)
            .is_ok()
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(denied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_come_from_the_end_of_the_path() {
        let r = Route::SubcloudsShow;
        assert_eq!(
            r.path_ref("/v1.0/subclouds/dc1").unwrap(),
            Some(Ref::parse("s", "dc1").unwrap())
        );
        assert_eq!(
            r.path_ref("/prod/v1.0/subclouds/7/").unwrap(),
            Some(Ref::Id(7))
        );
        assert_eq!(
            r.path_ref("/v1.0/subclouds/dc%2D1").unwrap(),
            Some(Ref::parse("s", "dc-1").unwrap())
        );
        assert!(matches!(
            r.path_ref("/v1.0/other/dc1"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            r.path_ref("/v1.0/subclouds/bad%zz"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            r.path_ref("/v1.0/subclouds/a%20b"),
            Err(ApiError::NotFound(_))
        ));
        let m = Route::GroupsMembers;
        assert_eq!(
            m.path_ref("/v1.0/subcloud-groups/Default/subclouds")
                .unwrap(),
            Some(Ref::parse("g", "Default").unwrap())
        );
        assert_eq!(
            Route::GroupsList.path_ref("/v1.0/subcloud-groups").unwrap(),
            None
        );
    }
}
