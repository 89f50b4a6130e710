//! The HTTP API: one `Route` per Lambda function, and `handle`, the handler every function
//! runs. A route knows its method, its path pattern and its policy rule; `handle` checks
//! those, parses the request into a typed command, runs it and renders the answer.

mod backup;
mod error;
mod fields;
mod groups;
mod multipart;
mod operations;
mod schedules;
mod subclouds;

pub use backup::{answer as backup_answer, Command, Target};
pub use error::{ApiError, ReasonStatus, SubcloudReason};
pub use fields::Fields;

use crate::auth::{policy::rules, Authenticator, Principal};
use crate::domain::{epoch_now, Invalid, OpId, OpKind, Ref, Release};
use crate::jobs::JobQueue;
use crate::store::{Begin, Inventory};
use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

/// Everything a handler needs, built once per cold start.
#[derive(Debug)]
pub struct App {
    pub auth: Arc<Authenticator>,
    pub inventory: Inventory,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    SubcloudsList,
    SubcloudsRegister,
    SubcloudsShow,
    SubcloudsDetail,
    SubcloudsUpdate,
    SubcloudsDelete,
    GroupsList,
    GroupsCreate,
    GroupsShow,
    GroupsUpdate,
    GroupsDelete,
    GroupsMembers,
    BackupCreate,
    BackupDelete,
    BackupRestore,
    OperationsShow,
    OperationsHistory,
    BackupsList,
    SchedulesList,
    SchedulesCreate,
    SchedulesShow,
    SchedulesUpdate,
    SchedulesDelete,
}

impl Route {
    pub const ALL: [Route; 23] = [
        Route::SubcloudsList,
        Route::SubcloudsRegister,
        Route::SubcloudsShow,
        Route::SubcloudsDetail,
        Route::SubcloudsUpdate,
        Route::SubcloudsDelete,
        Route::GroupsList,
        Route::GroupsCreate,
        Route::GroupsShow,
        Route::GroupsUpdate,
        Route::GroupsDelete,
        Route::GroupsMembers,
        Route::BackupCreate,
        Route::BackupDelete,
        Route::BackupRestore,
        Route::OperationsShow,
        Route::OperationsHistory,
        Route::BackupsList,
        Route::SchedulesList,
        Route::SchedulesCreate,
        Route::SchedulesShow,
        Route::SchedulesUpdate,
        Route::SchedulesDelete,
    ];

    /// The Lambda function (and crate under `functions/`) serving this route.
    pub fn function(self) -> &'static str {
        match self {
            Route::SubcloudsList => "subclouds-list",
            Route::SubcloudsRegister => "subclouds-register",
            Route::SubcloudsShow => "subclouds-show",
            Route::SubcloudsDetail => "subclouds-detail",
            Route::SubcloudsUpdate => "subclouds-update",
            Route::SubcloudsDelete => "subclouds-delete",
            Route::GroupsList => "groups-list",
            Route::GroupsCreate => "groups-create",
            Route::GroupsShow => "groups-show",
            Route::GroupsUpdate => "groups-update",
            Route::GroupsDelete => "groups-delete",
            Route::GroupsMembers => "groups-members",
            Route::BackupCreate => "subcloud-backup-create",
            Route::BackupDelete => "subcloud-backup-delete",
            Route::BackupRestore => "subcloud-backup-restore",
            Route::OperationsShow => "operations-show",
            Route::OperationsHistory => "operations-history",
            Route::BackupsList => "backups-list",
            Route::SchedulesList => "backup-schedules-list",
            Route::SchedulesCreate => "backup-schedules-create",
            Route::SchedulesShow => "backup-schedules-show",
            Route::SchedulesUpdate => "backup-schedules-update",
            Route::SchedulesDelete => "backup-schedules-delete",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Route::SubcloudsList | Route::SubcloudsShow | Route::SubcloudsDetail => Method::GET,
            Route::GroupsList | Route::GroupsShow | Route::GroupsMembers => Method::GET,
            Route::OperationsShow | Route::OperationsHistory | Route::BackupsList => Method::GET,
            Route::SubcloudsRegister | Route::GroupsCreate | Route::BackupCreate => Method::POST,
            Route::SubcloudsUpdate | Route::GroupsUpdate => Method::PATCH,
            Route::BackupDelete | Route::BackupRestore => Method::PATCH,
            Route::SubcloudsDelete | Route::GroupsDelete => Method::DELETE,
            Route::SchedulesList | Route::SchedulesShow => Method::GET,
            Route::SchedulesCreate => Method::POST,
            Route::SchedulesUpdate => Method::PATCH,
            Route::SchedulesDelete => Method::DELETE,
        }
    }

    /// The policy rule a caller must pass. A subcloud update that only manages or unmanages
    /// needs the weaker `manage_unmanage` rule instead (checked once the body is parsed).
    pub fn policy_rule(self) -> &'static str {
        match self {
            Route::SubcloudsList | Route::SubcloudsShow | Route::SubcloudsDetail => {
                rules::SUBCLOUDS_GET
            }
            Route::SubcloudsRegister => rules::SUBCLOUDS_CREATE,
            Route::SubcloudsUpdate => rules::SUBCLOUDS_MODIFY,
            Route::SubcloudsDelete => rules::SUBCLOUDS_DELETE,
            Route::GroupsList | Route::GroupsShow | Route::GroupsMembers => {
                rules::SUBCLOUD_GROUPS_GET
            }
            Route::GroupsCreate => rules::SUBCLOUD_GROUPS_CREATE,
            Route::GroupsUpdate => rules::SUBCLOUD_GROUPS_MODIFY,
            Route::GroupsDelete => rules::SUBCLOUD_GROUPS_DELETE,
            Route::BackupCreate => rules::SUBCLOUD_BACKUP_CREATE,
            Route::BackupDelete => rules::SUBCLOUD_BACKUP_DELETE,
            Route::BackupRestore => rules::SUBCLOUD_BACKUP_RESTORE,
            Route::OperationsShow | Route::OperationsHistory | Route::BackupsList => {
                rules::SUBCLOUD_BACKUP_GET
            }
            Route::SchedulesList | Route::SchedulesShow => rules::BACKUP_SCHEDULES_GET,
            Route::SchedulesCreate => rules::BACKUP_SCHEDULES_CREATE,
            Route::SchedulesUpdate => rules::BACKUP_SCHEDULES_MODIFY,
            Route::SchedulesDelete => rules::BACKUP_SCHEDULES_DELETE,
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
            Route::SubcloudsDetail => "/v1.0/subclouds/{ref}/detail",
            Route::GroupsMembers => "/v1.0/subcloud-groups/{ref}/subclouds",
            Route::BackupCreate => "/v1.0/subcloud-backup",
            Route::BackupDelete => "/v1.0/subcloud-backup/delete/{release_version}",
            Route::BackupRestore => "/v1.0/subcloud-backup/restore",
            Route::OperationsShow => "/v1.0/subcloud-backup/operations/{op_id}",
            Route::OperationsHistory => "/v1.0/subclouds/{ref}/operations",
            Route::BackupsList => "/v1.0/subclouds/{ref}/backups",
            Route::SchedulesList | Route::SchedulesCreate => "/v1.0/backup-schedules",
            Route::SchedulesShow | Route::SchedulesUpdate | Route::SchedulesDelete => {
                "/v1.0/backup-schedules/{ref}"
            }
        }
    }

    /// The routes whose pattern is this whole path, with or without one trailing slash
    /// (SPEC §2), whatever their method.
    pub fn for_path(path: &str) -> Vec<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        Route::ALL
            .into_iter()
            .filter(|route| {
                let pattern: Vec<&str> = route.pattern().split('/').collect();
                pattern.len() == segments.len()
                    && pattern.iter().zip(&segments).all(|(want, got)| {
                        want == got || (want.starts_with('{') && !got.is_empty())
                    })
            })
            .collect()
    }

    /// The `{...}` segment of a request path, percent-decoded. The pattern is matched
    /// against the end of the path, so an API Gateway stage prefix does not matter.
    fn path_param(self, path: &str) -> Result<Option<String>, ApiError> {
        let not_found = || ApiError::NotFound(format!("No route for {path}"));
        let pattern: Vec<&str> = self.pattern().trim_matches('/').split('/').collect();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        if segments.len() < pattern.len() {
            return Err(not_found());
        }
        let tail = &segments[segments.len() - pattern.len()..];
        let mut found = None;
        for (want, got) in pattern.iter().zip(tail) {
            if want.starts_with('{') {
                found = Some(percent_decode(got).ok_or_else(not_found)?);
            } else if want != got {
                return Err(not_found());
            }
        }
        Ok(found)
    }
}

/// A path's subcloud or group reference; one that cannot name anything is simply not found.
fn path_ref(route: Route, param: Option<&str>) -> Result<Ref, ApiError> {
    let value = param.unwrap_or_default();
    let message = if route.function().starts_with("groups") {
        format!("Subcloud group not found: {value}")
    } else if route.function().starts_with("backup-schedules") {
        format!("Backup schedule not found: {value}")
    } else {
        "Subcloud not found".to_owned()
    };
    Ref::parse("ref", value).map_err(|_| ApiError::NotFound(message))
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
    let param = param.as_deref();
    let body: &[u8] = req.body().as_ref();
    if body.len() > app.max_body_bytes {
        return Err(ApiError::PayloadTooLarge(app.max_body_bytes));
    }
    let target = || path_ref(route, param);
    let backup = |kind| backup_route(app, route, kind, &req, &principal, param);
    match route {
        Route::SubcloudsList => subclouds::list(app).await,
        Route::SubcloudsRegister => subclouds::register(app, body).await,
        Route::SubcloudsShow => subclouds::show(app, &target()?).await,
        Route::SubcloudsDetail => subclouds::detail(app, &target()?).await,
        Route::SubcloudsUpdate => subclouds::update(app, &principal, &target()?, body).await,
        Route::SubcloudsDelete => subclouds::delete(app, &target()?).await,
        Route::GroupsList => groups::list(app).await,
        Route::GroupsCreate => groups::create(app, body).await,
        Route::GroupsShow => groups::show(app, &target()?).await,
        Route::GroupsUpdate => groups::update(app, &target()?, body).await,
        Route::GroupsDelete => groups::delete(app, &target()?).await,
        Route::GroupsMembers => groups::members(app, &target()?).await,
        Route::OperationsShow => {
            let op_id = OpId::parse("op_id", param.unwrap_or_default()).map_err(|_| {
                ApiError::NotFound(format!(
                    "Operation not found: {}",
                    param.unwrap_or_default()
                ))
            })?;
            operations::show(app, &op_id).await
        }
        Route::OperationsHistory => operations::history(app, &target()?).await,
        Route::BackupsList => operations::backups(app, &target()?).await,
        Route::BackupCreate => backup(OpKind::Create).await,
        Route::BackupDelete => backup(OpKind::Delete).await,
        Route::BackupRestore => backup(OpKind::Restore).await,
        Route::SchedulesList => schedules::list(app).await,
        Route::SchedulesCreate => schedules::create(app, body).await,
        Route::SchedulesShow => schedules::show(app, &target()?).await,
        Route::SchedulesUpdate => schedules::update(app, &target()?, body).await,
        Route::SchedulesDelete => schedules::delete(app, &target()?).await,
    }
}

/// A subcloud-backup request: parsed into a command (the delete route's path names the
/// release), then run once per Idempotency-Key.
async fn backup_route(
    app: &App,
    route: Route,
    kind: OpKind,
    req: &Request,
    principal: &Principal,
    param: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let command = backup_command(kind, req, param)?;
    idempotent(app, route, req, principal, &command).await
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

/// Runs a subcloud-backup command once per `Idempotency-Key` (scoped to the route and the
/// caller): the same key and request within a day get the first answer again; the same key
/// with another request is refused.
async fn idempotent(
    app: &App,
    route: Route,
    req: &Request,
    principal: &Principal,
    command: &Command,
) -> Result<Response<Body>, ApiError> {
    let Some(key) = req.headers().get("idempotency-key") else {
        return backup::execute(app, principal, command, None).await;
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?;
    // Length-prefixed, so no subject/key split can collide with another caller's.
    let scoped = crate::domain::digest_hex(&format!(
        "{}:{}{}:{}{key}",
        route.function(),
        principal.subject.len(),
        principal.subject,
        key.len()
    ));
    let fingerprint = command.fingerprint();
    match app
        .inventory
        .begin_idempotent(
            &scoped,
            &fingerprint,
            epoch_now(),
            app.idempotency_hold_seconds,
        )
        .await?
    {
        Begin::Replay { status, body } => {
            let status = StatusCode::from_u16(status).map_err(|_| ApiError::Internal)?;
            return Ok(if body.is_empty() {
                empty_response(status)
            } else {
                Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::Text(body))
                    .map_err(|_| ApiError::Internal)?
            });
        }
        Begin::Mismatch => {
            return Err(ApiError::Unprocessable(
                "This Idempotency-Key was used with a different request; use a new key".into(),
            ))
        }
        Begin::InProgress => {
            return Err(ApiError::Conflict(
                "A request with this Idempotency-Key is still being processed; retry shortly"
                    .into(),
            ))
        }
        Begin::New => {}
    }
    let response = match backup::execute(app, principal, command, Some(&scoped)).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    if response.status().is_server_error() {
        app.inventory
            .abandon_idempotent(&scoped, &fingerprint)
            .await?;
    } else {
        let bytes: &[u8] = response.body().as_ref();
        let body = String::from_utf8_lossy(bytes).into_owned();
        app.inventory
            .finish_idempotent(
                &scoped,
                &fingerprint,
                response.status().as_u16(),
                &body,
                epoch_now(),
            )
            .await?;
    }
    Ok(response)
}

/// Checks the route's rule before anything is read. A subcloud update may instead pass on
/// `manage_unmanage` alone; the handler then checks the rule its parsed command needs.
fn authorize_route(
    auth: &Authenticator,
    route: Route,
    principal: &Principal,
) -> Result<(), ApiError> {
    let denied = match auth.authorize(route.policy_rule(), principal) {
        Ok(()) => return Ok(()),
        Err(denied) => denied,
    };
    if route == Route::SubcloudsUpdate
        && auth
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
    fn params_come_from_the_end_of_the_path() {
        let show = Route::SubcloudsShow;
        let param = |route: Route, path: &str| route.path_param(path);
        assert_eq!(
            param(show, "/v1.0/subclouds/dc1").unwrap().as_deref(),
            Some("dc1")
        );
        assert_eq!(
            param(show, "/prod/v1.0/subclouds/7/").unwrap().as_deref(),
            Some("7")
        );
        assert_eq!(
            param(show, "/v1.0/subclouds/dc%2D1").unwrap().as_deref(),
            Some("dc-1")
        );
        assert!(matches!(
            param(show, "/v1.0/other/dc1"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            param(show, "/v1.0/subclouds/bad%zz"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            path_ref(show, Some("a b")),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(path_ref(show, Some("12")).unwrap(), Ref::Id(12));
        let members = Route::GroupsMembers;
        assert_eq!(
            param(members, "/v1.0/subcloud-groups/Default/subclouds")
                .unwrap()
                .as_deref(),
            Some("Default")
        );
        assert_eq!(
            param(Route::GroupsList, "/v1.0/subcloud-groups").unwrap(),
            None
        );
        for route in Route::ALL {
            let path = route.pattern().replace("{ref}", "dc1");
            for path in [path.clone(), format!("{path}/")] {
                let found: Vec<Route> = Route::for_path(&path)
                    .into_iter()
                    .filter(|r| r.method() == route.method())
                    .collect();
                assert_eq!(found, [route], "{path}");
            }
        }
        assert_eq!(
            Route::for_path("/v1.0/subclouds/dc1"),
            [
                Route::SubcloudsShow,
                Route::SubcloudsUpdate,
                Route::SubcloudsDelete
            ]
        );
        assert!(Route::for_path("/v1.0/subclouds//").is_empty());
        assert!(Route::for_path("/v1.0/subclouds/a/b").is_empty());
        assert_eq!(
            param(Route::BackupDelete, "/v1.0/subcloud-backup/delete/24.09")
                .unwrap()
                .as_deref(),
            Some("24.09")
        );
    }
}
