//! The HTTP API: one `Route` per Lambda function, declared once in `routes.rs` (method, path
//! template, policy rule, handler), and `handle`, the handler every function runs: it checks
//! the route's method, token and rule, then hands the request to the route's handler, which
//! parses it into a typed command, runs it and renders the answer.

mod backup;
mod error;
mod fields;
mod groups;
mod idempotency;
mod multipart;
mod operations;
mod routes;
mod schedules;
mod subclouds;

pub use backup::{answer as backup_answer, Command, Target};
pub use error::{ApiError, ReasonStatus, SubcloudReason};
pub use fields::Fields;
pub use idempotency::IdempotencyKey;
pub use routes::{Route, RouteSpec, ROUTES};

use crate::auth::{Authenticator, Principal};
use crate::domain::{Invalid, OpKind, Release};
use crate::jobs::JobQueue;
use crate::store::Store;
use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use routes::Call;
use std::sync::Arc;

/// Everything a handler needs, built once per cold start.
#[derive(Debug)]
pub struct App {
    pub auth: Arc<Authenticator>,
    pub inventory: Store,
    pub jobs: JobQueue,
    pub max_body_bytes: usize,
    pub lease_seconds: u64,
    pub claim_concurrency: usize,
    /// How long a request holds its `Idempotency-Key` (`Config::idempotency_hold_seconds`).
    pub idempotency_hold_seconds: u64,
}

impl App {
    /// The one way to start operations, over this app's store and queue.
    pub fn starter(&self) -> crate::operations::Starter<'_> {
        crate::operations::Starter {
            inventory: &self.inventory,
            jobs: &self.jobs,
            lease_seconds: self.lease_seconds,
            claim_concurrency: self.claim_concurrency,
        }
    }
}

pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    let text = serde_json::to_string(body).expect("answers are plain JSON: string keys only");
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::Text(text))
        .expect("status and header are valid")
}

pub(crate) fn empty_response(status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::Empty)
        .expect("status is valid")
}

/// The 405 for `method` on a path whose routes are `routes`; `None` when no route serves
/// the path at all.
fn method_not_allowed(method: &Method, routes: &[Route]) -> Option<ApiError> {
    let first = routes.first()?;
    let allow: Vec<String> = routes.iter().map(|r| r.method().to_string()).collect();
    let allow = allow.join(", ");
    Some(ApiError::MethodNotAllowed {
        message: format!(
            "{method} is not allowed on {}; use {allow}",
            first.pattern()
        ),
        allow,
    })
}

/// API Gateway's `$default` route (and `make run`'s router for everything it does not route):
/// a request no route serves gets dcbackup's JSON error, 404 for an unknown path and 405
/// with `Allow` for a method its path does not take. Needs no token: it reveals nothing
/// beyond the routes this module declares.
pub fn default_route(req: &Request) -> Response<Body> {
    let path = req.uri().path();
    let error = method_not_allowed(req.method(), &Route::for_path(path)).unwrap_or_else(|| {
        ApiError::NotFound(format!(
            "No route for {} {path}; the API's routes are under /v1.0 (see README.md)",
            req.method()
        ))
    });
    let response = error.into_response();
    tracing::info!(
        function = "default-route",
        status = response.status().as_u16(),
        "request served"
    );
    response
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

/// Every route's first step: the request's method is the route's, its token is good and the
/// caller it names may use the route.
pub async fn caller(
    auth: &Authenticator,
    route: Route,
    req: &Request,
) -> Result<Principal, ApiError> {
    if req.method() != route.method() {
        return Err(
            method_not_allowed(req.method(), &Route::for_path(req.uri().path())).unwrap_or_else(
                || ApiError::NotFound(format!("No route for {}", req.uri().path())),
            ),
        );
    }
    let principal = auth
        .authenticate(req.headers())
        .await
        .map_err(ApiError::Unauthorized)?;
    authorize_route(auth, route, &principal)?;
    Ok(principal)
}

async fn serve(app: &App, route: Route, req: Request) -> Result<Response<Body>, ApiError> {
    let principal = caller(&app.auth, route, &req).await?;
    let param = route.path_param(req.uri().path())?;
    let body: &[u8] = req.body().as_ref();
    if body.len() > app.max_body_bytes {
        return Err(ApiError::PayloadTooLarge(app.max_body_bytes));
    }
    let call = Call {
        app,
        route,
        req: &req,
        principal: &principal,
        param: param.as_deref(),
        body,
    };
    (route.spec().handler)(&call).await
}

/// A subcloud-backup request: parsed into a command (the delete route's path names the
/// release), then run once per Idempotency-Key.
async fn backup_route(call: &Call<'_>, kind: OpKind) -> Result<Response<Body>, ApiError> {
    let command = backup_command(kind, call.req, call.param)?;
    idempotency::run(call, &command).await
}

/// A subcloud-backup request as a command: the delete route's path parameter (`param`) is
/// the release, the body gives the target and options.
pub fn backup_command(
    kind: OpKind,
    req: &Request,
    param: Option<&str>,
) -> Result<Command, ApiError> {
    let release = match param {
        Some(release) => Some(Release::parse("release_version", release).map_err(Invalid::from)?),
        None => None,
    };
    Command::parse(kind, release, request_fields(req)?)
}

/// A body's fields: `multipart/form-data` (every part as text; value files are parsed as
/// YAML by `Fields::mapping`), else JSON whatever the Content-Type says, as dcmanager reads
/// it (curl's `-d` sends `application/x-www-form-urlencoded`).
fn request_fields(req: &Request) -> Result<Fields, ApiError> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body: &[u8] = req.body().as_ref();
    match multipart::boundary(content_type) {
        Some(boundary) => Fields::from_map(multipart::parse(body, &boundary?)?),
        None => Fields::from_json(body),
    }
}

/// Checks the route's rule before anything is read, or its weaker `or_rule` (a subcloud
/// update that only manages or unmanages); the handler then checks the rule its parsed
/// command needs.
fn authorize_route(
    auth: &Authenticator,
    route: Route,
    principal: &Principal,
) -> Result<(), ApiError> {
    let spec = route.spec();
    let denied = match auth.authorize(spec.rule, principal) {
        Ok(()) => return Ok(()),
        Err(denied) => denied,
    };
    if spec
        .or_rule
        .is_some_and(|rule| auth.authorize(rule, principal).is_ok())
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(denied))
}
