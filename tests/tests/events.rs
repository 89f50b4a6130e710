//! Every sample event in `events/` runs through its function's handler, so the samples used
//! with `cargo lambda invoke` cannot rot: each must parse as an API Gateway HTTP API event,
//! reach its route and succeed against a seeded stack.

use dcbackup::api::Route;
use dcbackup_tests::Stack;
use http::StatusCode;
use serde_json::json;
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
    assert!(stack
        .app
        .inventory
        .put_operations(&[op])
        .await
        .unwrap()
        .is_empty());
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

#[test]
fn every_function_has_a_crate_and_a_router_entry() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for route in Route::ALL {
        let function = route.function();
        assert!(
            root.join("functions")
                .join(function)
                .join("Cargo.toml")
                .exists(),
            "functions/{function} is missing"
        );
        let path = format!("\"{}\" = ", route.pattern());
        let entry = format!(
            "{{ method = \"{}\", function = \"{function}\" }}",
            route.method()
        );
        assert!(
            manifest
                .lines()
                .any(|line| line.starts_with(&path) && line.contains(&entry)),
            "the watch router has no {path}[{entry}]"
        );
    }
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
    let inline = read("scheduler-inline.json");
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
