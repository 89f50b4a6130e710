//! Every sample event in `events/` runs through its function's handler, so the samples used
//! with `cargo lambda invoke` cannot rot: each must parse as an API Gateway HTTP API event,
//! reach its route and succeed against a seeded stack.

use dcbackup::api::Route;
use dcbackup_tests::Stack;
use http::StatusCode;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn event_path(route: Route) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{}.json", route.function()))
}

/// The inventory the samples refer to: group `edge` holding `subcloud1` (unmanaged),
/// `subcloud2` (unmanaged, with a central backup of 24.09) and `subcloud3` (managed,
/// online); an empty group `spare`; the operation the operations-show sample asks for; and
/// the backup schedule `nightly-edge` of group `edge`.
async fn seeded() -> Stack {
    let stack = Stack::new().await;
    stack.create_group("edge").await;
    stack.create_group("spare").await;
    stack
        .register("subcloud1", json!({"group_id": "edge"}))
        .await;
    let sc2 = stack
        .register("subcloud2", json!({"group_id": "edge"}))
        .await;
    stack
        .add_backup(sc2["id"].as_u64().unwrap(), "24.09", false)
        .await;
    let managed =
        json!({"group_id": "edge", "management-state": "managed", "availability-status": "online"});
    stack.register("subcloud3", managed).await;
    let op: dcbackup::domain::Operation = serde_json::from_value(json!({
        "op_id": "9b2f7c1e-3a4d-4e5f-8a6b-7c8d9e0f1a2b",
        "kind": "create",
        "subcloud_id": 3,
        "subcloud_name": "subcloud3",
        "release": "24.09",
        "fence": 1,
        "options": {"local_only": false, "registry_images": false},
        "requested_by": "admin",
        "state": "queued",
        "created_at": "2026-11-25 10:00:00.000000",
        "updated_at": "2026-11-25 10:00:00.000000"
    }))
    .unwrap();
    // Kept as it is (records are otherwise only written with their claim).
    stack
        .clients
        .dynamodb
        .put_item()
        .table_name(&stack.resources.operations_table)
        .set_item(Some(serde_dynamo::to_item(&op).unwrap()))
        .send()
        .await
        .unwrap();
    let schedule = json!({"name": "nightly-edge", "group": "edge", "cron": "@daily"});
    let reply = stack
        .call(
            Route::SchedulesCreate,
            "/v1.0/backup-schedules",
            Some(schedule),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    stack
}

/// What each sample's route answers on success.
fn expected(route: Route) -> StatusCode {
    match route {
        Route::BackupDelete => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    }
}

#[tokio::test]
async fn every_route_has_a_sample_event_that_succeeds() {
    for route in Route::ALL {
        let path = event_path(route);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
        let mut request = lambda_http::request::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not an API Gateway event: {e}", path.display()));
        assert_eq!(request.method(), route.method(), "{}", path.display());
        let stack = seeded().await;
        let bearer = format!("Bearer {}", stack.admin_token);
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, bearer.parse().unwrap());
        let reply = stack.request(route, request).await;
        assert_eq!(
            reply.status,
            expected(route),
            "{}: {:?}",
            path.display(),
            reply.body
        );
    }
}

/// `make run`'s router (`[workspace.metadata.lambda.watch.router]` of the root Cargo.toml):
/// path → (method, function) for every entry, read line by line as watch's table is written.
fn watch_router(manifest: &str) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let section = manifest
        .split("[workspace.metadata.lambda.watch.router]")
        .nth(1)
        .expect("the root Cargo.toml has a watch router")
        .split("\n[")
        .next()
        .unwrap_or_default();
    let quoted = |text: &str, key: &str| {
        let start = text.find(&format!("{key} = \""))? + key.len() + 4;
        let len = text[start..].find('"')?;
        Some(text[start..start + len].to_owned())
    };
    let mut router = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with('"')) {
        let (path, entries) = line
            .split_once(" = ")
            .expect("a router line is path = [...]");
        // `"path" = "function"`: every method.
        if let Some(function) = entries.strip_prefix('"') {
            let function = function.trim_end_matches('"').to_owned();
            let any = BTreeSet::from([("*".to_owned(), function)]);
            router.insert(path.trim_matches('"').to_owned(), any);
            continue;
        }
        let targets = entries
            .split('{')
            .skip(1)
            .map(|entry| {
                let method = quoted(entry, "method").expect("a method");
                let function = quoted(entry, "function").expect("a function");
                (method, function)
            })
            .collect();
        router.insert(path.trim_matches('"').to_owned(), targets);
    }
    router
}

/// The methods `make run`'s router sends to `default-route` where a path does not take them.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

#[test]
fn every_function_has_a_crate_and_watch_serves_its_route_with_and_without_a_slash() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let router = watch_router(&manifest);
    let mut expected: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for route in Route::ALL {
        let function = route.function();
        assert!(
            root.join("functions")
                .join(function)
                .join("Cargo.toml")
                .exists(),
            "functions/{function} is missing"
        );
        for path in [route.pattern().to_owned(), format!("{}/", route.pattern())] {
            expected
                .entry(path)
                .or_default()
                .insert((route.method().to_string(), function.to_owned()));
        }
    }
    // Every other method of a known path, and every other path, to the default route.
    for targets in expected.values_mut() {
        let served: BTreeSet<String> = targets.iter().map(|(m, _)| m.clone()).collect();
        for method in METHODS.iter().filter(|m| !served.contains(**m)) {
            targets.insert((method.to_string(), "default-route".to_owned()));
        }
    }
    for path in ["/", "/{*path}"] {
        let any = BTreeSet::from([("*".to_owned(), "default-route".to_owned())]);
        expected.insert(path.to_owned(), any);
    }
    assert_eq!(router, expected, "the watch router differs from the routes");
}

#[test]
fn the_default_route_answers_json_404_and_405_with_allow() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/default-route.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let sample = lambda_http::request::from_str(&text).unwrap();
    let check = |request: &lambda_http::Request, status: StatusCode, message: &str| {
        let response = dcbackup::api::default_route(request);
        assert_eq!(response.status(), status);
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], status.as_u16());
        assert_eq!(body["error"]["message"], message);
        response.headers().get(http::header::ALLOW).cloned()
    };
    // The sample: PUT on the subclouds collection.
    let allow = check(
        &sample,
        StatusCode::METHOD_NOT_ALLOWED,
        "PUT is not allowed on /v1.0/subclouds; use GET, POST",
    );
    assert_eq!(allow.unwrap(), "GET, POST");
    let request = |method: &str, path: &str| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(lambda_http::Body::Empty)
            .unwrap()
    };
    let allow = check(
        &request("POST", "/v1.0/subclouds/sc1/"),
        StatusCode::METHOD_NOT_ALLOWED,
        "POST is not allowed on /v1.0/subclouds/{ref}; use GET, PATCH, DELETE",
    );
    assert_eq!(allow.unwrap(), "GET, PATCH, DELETE");
    let allow = check(
        &request("GET", "/v1.0/nosuch"),
        StatusCode::NOT_FOUND,
        "No route for GET /v1.0/nosuch; the API's routes are under /v1.0 (see README.md)",
    );
    assert!(allow.is_none());
}

/// The scheduler's two samples: the every-minute tick (fires what is due: here nothing) and
/// an EventBridge Scheduler event naming its target inline, group `edge-east` as `make run`
/// seeds it (starts the backups of its valid members; delivered again, it starts nothing).
#[tokio::test]
async fn the_scheduler_samples_run() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(name)).unwrap()).unwrap()
    };
    let stack = Stack::new().await;
    stack.create_group("edge-east").await;
    let managed = json!({"group_id": "edge-east", "management-state": "managed", "availability-status": "online"});
    stack.register("subcloud1", managed.clone()).await;
    stack.register("subcloud2", managed).await;
    stack
        .register("subcloud9", json!({"group_id": "edge-east"}))
        .await;
    let scheduler = stack.scheduler();
    let tick = scheduler.handle(&read("scheduler.json")).await.unwrap();
    assert_eq!(tick["fired"], 0, "{tick}");
    let inline = read("scheduler.inline.json");
    let first = scheduler.handle(&inline).await.unwrap();
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(first["op_ids"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(
        first["skipped"][0]["name"], "subcloud9",
        "unmanaged: {first}"
    );
    let again = scheduler.handle(&inline).await.unwrap();
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["op_ids"], first["op_ids"]);
    assert_eq!(stack.drain_jobs().await.len(), 2, "two jobs, not four");
}
