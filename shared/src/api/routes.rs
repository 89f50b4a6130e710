//! The API's routes, declared once. Each line of the `routes!` table below names a route and
//! gives its Lambda function, method, path template, policy rule and handler; the router
//! (`handle`, `default_route`), `make run`'s watch router check, the SAM template drift test,
//! the sample events and the auth tests all read [`ROUTES`] (through [`Route`]).

use super::{backup_route, subclouds, ApiError, App};
use super::{groups, operations, schedules};
use crate::auth::policy::rules;
use crate::auth::Principal;
use crate::domain::{OpId, OpKind, Ref};
use futures::future::BoxFuture;
use http::Method;
use lambda_http::{Body, Request, Response};

/// What a handler is given: the request, its caller and the route's path parameter, already
/// checked against the route.
pub(super) struct Call<'a> {
    pub app: &'a App,
    pub route: Route,
    pub req: &'a Request,
    pub principal: &'a Principal,
    /// The `{...}` segment of the path, percent-decoded.
    pub param: Option<&'a str>,
    pub body: &'a [u8],
}

impl Call<'_> {
    fn param(&self) -> &str {
        self.param.unwrap_or_default()
    }

    fn subcloud(&self) -> Result<Ref, ApiError> {
        path_ref(self.param(), || "Subcloud not found".to_owned())
    }

    fn group(&self) -> Result<Ref, ApiError> {
        path_ref(self.param(), || {
            format!("Subcloud group not found: {}", self.param())
        })
    }

    fn schedule(&self) -> Result<Ref, ApiError> {
        path_ref(self.param(), || {
            format!("Backup schedule not found: {}", self.param())
        })
    }

    fn op_id(&self) -> Result<OpId, ApiError> {
        OpId::parse("op_id", self.param())
            .map_err(|_| ApiError::NotFound(format!("Operation not found: {}", self.param())))
    }
}

/// A path's subcloud, group or schedule reference; one that cannot name anything is simply
/// not found (`not_found` says what).
fn path_ref(param: &str, not_found: impl FnOnce() -> String) -> Result<Ref, ApiError> {
    Ref::parse("ref", param).map_err(|_| ApiError::NotFound(not_found()))
}

/// A route's handler: serves a [`Call`] that passed the route's method, token and rule.
pub(super) type Handler =
    for<'a> fn(&'a Call<'a>) -> BoxFuture<'a, Result<Response<Body>, ApiError>>;

/// Everything about one route.
#[derive(Debug)]
pub struct RouteSpec {
    pub route: Route,
    /// The Lambda function (and crate under `functions/`) serving it.
    pub function: &'static str,
    pub method: Method,
    /// The path, with `{name}` where one non-empty segment goes (a subcloud, group or
    /// schedule name or id, an operation id, a release).
    pub path: &'static str,
    /// The policy rule a caller must pass (`auth::policy::rules`).
    pub rule: &'static str,
    /// A weaker rule that also admits the caller to the route: the handler then checks the
    /// rule its parsed request needs (a subcloud update that only manages or unmanages).
    pub or_rule: Option<&'static str>,
    pub(super) handler: Handler,
}

impl RouteSpec {
    /// The path parameter's raw value if the template matches `segments` (a path split at
    /// `/`, without its leading empty segment), one for one.
    fn capture<'p>(&self, segments: &[&'p str]) -> Option<Option<&'p str>> {
        let template: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
        if template.len() != segments.len() {
            return None;
        }
        let mut param = None;
        for (want, got) in template.iter().zip(segments) {
            if want.starts_with('{') && !got.is_empty() {
                param = Some(*got);
            } else if want != got {
                return None;
            }
        }
        Some(param)
    }
}

/// Declares [`Route`], [`Route::ALL`] and [`ROUTES`] from one list, in one order, so a route
/// cannot lack a row and `Route::spec` is an index.
macro_rules! routes {
    ($(
        $(#[doc = $doc:literal])*
        $route:ident: $method:ident $path:literal => $function:literal,
            $rule:expr $(, or $or_rule:expr)?;
            $handler:expr;
    )*) => {
        /// One route of the API, served by its own Lambda function.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Route {
            $($(#[doc = $doc])* $route,)*
        }

        const COUNT: usize = [$(stringify!($route)),*].len();

        impl Route {
            /// Every route, in [`ROUTES`]' order.
            pub const ALL: [Route; COUNT] = [$(Route::$route),*];
        }

        /// The routes' table, in [`Route::ALL`]'s order.
        pub static ROUTES: [RouteSpec; COUNT] = [$(
            RouteSpec {
                route: Route::$route,
                function: $function,
                method: Method::$method,
                path: $path,
                rule: $rule,
                or_rule: routes!(@or $($or_rule)?),
                handler: $handler,
            },
        )*];
    };
    (@or $rule:expr) => { Some($rule) };
    (@or) => { None };
}

routes! {
    SubcloudsList: GET "/v1.0/subclouds" => "subclouds-list", rules::SUBCLOUDS_GET;
        |c| Box::pin(subclouds::list(c.app));
    SubcloudsRegister: POST "/v1.0/subclouds" => "subclouds-register", rules::SUBCLOUDS_CREATE;
        |c| Box::pin(subclouds::register(c.app, c.body));
    SubcloudsShow: GET "/v1.0/subclouds/{ref}" => "subclouds-show", rules::SUBCLOUDS_GET;
        |c| Box::pin(async move { subclouds::show(c.app, &c.subcloud()?).await });
    SubcloudsDetail: GET "/v1.0/subclouds/{ref}/detail" => "subclouds-detail", rules::SUBCLOUDS_GET;
        |c| Box::pin(async move { subclouds::detail(c.app, &c.subcloud()?).await });
    SubcloudsUpdate: PATCH "/v1.0/subclouds/{ref}" => "subclouds-update",
        rules::SUBCLOUDS_MODIFY, or rules::SUBCLOUDS_MANAGE_UNMANAGE;
        |c| Box::pin(async move {
            subclouds::update(c.app, c.principal, &c.subcloud()?, c.body).await
        });
    SubcloudsDelete: DELETE "/v1.0/subclouds/{ref}" => "subclouds-delete", rules::SUBCLOUDS_DELETE;
        |c| Box::pin(async move { subclouds::delete(c.app, &c.subcloud()?).await });
    GroupsList: GET "/v1.0/subcloud-groups" => "groups-list", rules::SUBCLOUD_GROUPS_GET;
        |c| Box::pin(groups::list(c.app));
    GroupsCreate: POST "/v1.0/subcloud-groups" => "groups-create", rules::SUBCLOUD_GROUPS_CREATE;
        |c| Box::pin(groups::create(c.app, c.body));
    GroupsShow: GET "/v1.0/subcloud-groups/{ref}" => "groups-show", rules::SUBCLOUD_GROUPS_GET;
        |c| Box::pin(async move { groups::show(c.app, &c.group()?).await });
    GroupsUpdate: PATCH "/v1.0/subcloud-groups/{ref}" => "groups-update",
        rules::SUBCLOUD_GROUPS_MODIFY;
        |c| Box::pin(async move { groups::update(c.app, &c.group()?, c.body).await });
    GroupsDelete: DELETE "/v1.0/subcloud-groups/{ref}" => "groups-delete",
        rules::SUBCLOUD_GROUPS_DELETE;
        |c| Box::pin(async move { groups::delete(c.app, &c.group()?).await });
    GroupsMembers: GET "/v1.0/subcloud-groups/{ref}/subclouds" => "groups-members",
        rules::SUBCLOUD_GROUPS_GET;
        |c| Box::pin(async move { groups::members(c.app, &c.group()?).await });
    BackupCreate: POST "/v1.0/subcloud-backup" => "subcloud-backup-create",
        rules::SUBCLOUD_BACKUP_CREATE;
        |c| Box::pin(backup_route(c, OpKind::Create));
    BackupDelete: PATCH "/v1.0/subcloud-backup/delete/{release_version}" => "subcloud-backup-delete",
        rules::SUBCLOUD_BACKUP_DELETE;
        |c| Box::pin(backup_route(c, OpKind::Delete));
    BackupRestore: PATCH "/v1.0/subcloud-backup/restore" => "subcloud-backup-restore",
        rules::SUBCLOUD_BACKUP_RESTORE;
        |c| Box::pin(backup_route(c, OpKind::Restore));
    OperationsShow: GET "/v1.0/subcloud-backup/operations/{op_id}" => "operations-show",
        rules::SUBCLOUD_BACKUP_GET;
        |c| Box::pin(async move { operations::show(c.app, &c.op_id()?).await });
    OperationsHistory: GET "/v1.0/subclouds/{ref}/operations" => "operations-history",
        rules::SUBCLOUD_BACKUP_GET;
        |c| Box::pin(async move { operations::history(c.app, &c.subcloud()?).await });
    BackupsList: GET "/v1.0/subclouds/{ref}/backups" => "backups-list", rules::SUBCLOUD_BACKUP_GET;
        |c| Box::pin(async move { operations::backups(c.app, &c.subcloud()?).await });
    SchedulesList: GET "/v1.0/backup-schedules" => "backup-schedules-list",
        rules::BACKUP_SCHEDULES_GET;
        |c| Box::pin(schedules::list(c.app));
    SchedulesCreate: POST "/v1.0/backup-schedules" => "backup-schedules-create",
        rules::BACKUP_SCHEDULES_CREATE;
        |c| Box::pin(schedules::create(c.app, c.body));
    SchedulesShow: GET "/v1.0/backup-schedules/{ref}" => "backup-schedules-show",
        rules::BACKUP_SCHEDULES_GET;
        |c| Box::pin(async move { schedules::show(c.app, &c.schedule()?).await });
    SchedulesUpdate: PATCH "/v1.0/backup-schedules/{ref}" => "backup-schedules-update",
        rules::BACKUP_SCHEDULES_MODIFY;
        |c| Box::pin(async move { schedules::update(c.app, &c.schedule()?, c.body).await });
    SchedulesDelete: DELETE "/v1.0/backup-schedules/{ref}" => "backup-schedules-delete",
        rules::BACKUP_SCHEDULES_DELETE;
        |c| Box::pin(async move { schedules::delete(c.app, &c.schedule()?).await });
}

impl Route {
    /// This route's row of [`ROUTES`].
    pub fn spec(self) -> &'static RouteSpec {
        &ROUTES[self as usize]
    }

    /// The Lambda function (and crate under `functions/`) serving this route.
    pub fn function(self) -> &'static str {
        self.spec().function
    }

    pub fn method(self) -> Method {
        self.spec().method.clone()
    }

    /// The policy rule a caller must pass; see [`RouteSpec::or_rule`] for the exception.
    pub fn policy_rule(self) -> &'static str {
        self.spec().rule
    }

    /// The path template, with `{...}` where a name, id or release goes.
    pub fn pattern(self) -> &'static str {
        self.spec().path
    }

    /// The routes whose template is this whole path, with or without one trailing slash
    /// (SPEC §2), whatever their method.
    pub fn for_path(path: &str) -> Vec<Route> {
        let Some(path) = path.strip_prefix('/') else {
            return Vec::new();
        };
        let path = path.strip_suffix('/').unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        ROUTES
            .iter()
            .filter(|spec| spec.capture(&segments).is_some())
            .map(|spec| spec.route)
            .collect()
    }

    /// The `{...}` segment of a request path, percent-decoded. The template is matched
    /// against the end of the path, so an API Gateway stage prefix does not matter.
    pub(super) fn path_param(self, path: &str) -> Result<Option<String>, ApiError> {
        let not_found = || ApiError::NotFound(format!("No route for {path}"));
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let length = self.pattern().trim_start_matches('/').split('/').count();
        let tail = segments
            .len()
            .checked_sub(length)
            .map(|start| &segments[start..])
            .ok_or_else(not_found)?;
        match self.spec().capture(tail).ok_or_else(not_found)? {
            Some(raw) => percent_decode(raw).map(Some).ok_or_else(not_found),
            None => Ok(None),
        }
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
            path_ref("a b", String::new),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(path_ref("12", String::new).unwrap(), Ref::Id(12));
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

    #[test]
    fn the_table_is_indexed_by_route_and_serves_each_path_and_method_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (index, spec) in ROUTES.iter().enumerate() {
            assert_eq!(spec.route as usize, index, "{:?}", spec.route);
            assert_eq!(Route::ALL[index], spec.route);
            assert!(
                seen.insert((spec.method.as_str(), spec.path)),
                "{} {} is declared twice",
                spec.method,
                spec.path
            );
            assert!(spec.path.starts_with("/v1.0/"), "{}", spec.path);
        }
    }
}
