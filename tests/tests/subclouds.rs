//! The subcloud inventory routes against DynamoDB Local: each happy path and each error.

use dcbackup::api::Route;
use dcbackup::wire::SUBCLOUD_KEYS;
use dcbackup_tests::Stack;
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn register_returns_every_dcmanager_key_with_defaults() {
    let stack = Stack::new().await;
    let sc = stack
        .register(
            "subcloud1",
            json!({
                "description": "Ottawa lab",
                "location": "Ottawa",
                "management-subnet": "192.168.101.0/24",
                "management-start-ip": "192.168.101.2",
                "management-end-ip": "192.168.101.50",
                "management-gateway-ip": "192.168.101.1",
                "systemcontroller-gateway-ip": "192.168.204.101",
                "agent-url": "http://127.0.0.1:18001"
            }),
        )
        .await;
    for key in SUBCLOUD_KEYS {
        assert!(sc.get(key).is_some(), "key {key} missing from {sc}");
    }
    assert_eq!(sc["name"], "subcloud1");
    assert_eq!(sc["management-state"], "unmanaged");
    assert_eq!(sc["availability-status"], "offline");
    assert_eq!(sc["deploy-status"], "complete");
    assert_eq!(sc["backup-status"], serde_json::Value::Null);
    assert_eq!(sc["group_id"], 1);
    assert_eq!(sc["software-version"], "24.09");
    assert_eq!(sc["agent-url"], "http://127.0.0.1:18001");
    assert_eq!(sc["region-name"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn list_and_show_by_name_and_by_id() {
    let stack = Stack::new().await;
    let a = stack.register("alpha", json!({})).await;
    let b = stack
        .register("bravo", json!({"management-state": "managed"}))
        .await;

    let list = stack
        .call(Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<&str> = list.body["subclouds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "bravo"]);

    let by_name = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/bravo", None)
        .await;
    assert_eq!(by_name.status, StatusCode::OK);
    assert_eq!(by_name.body, b);
    let by_id = format!("/v1.0/subclouds/{}", a["id"]);
    let by_id = stack.call(Route::SubcloudsShow, &by_id, None).await;
    assert_eq!(by_id.body, a);
}

#[tokio::test]
async fn unknown_subclouds_are_404() {
    let stack = Stack::new().await;
    for path in ["/v1.0/subclouds/nowhere", "/v1.0/subclouds/999"] {
        let reply = stack.call(Route::SubcloudsShow, path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.body["error"]["code"], 404);
        assert!(
            reply.message().contains("Subcloud not found"),
            "{}",
            reply.message()
        );
    }
    let patch = stack
        .call(
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/nowhere",
            Some(json!({"location": "x"})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::NOT_FOUND);
    let delete = stack
        .call(Route::SubcloudsDelete, "/v1.0/subclouds/nowhere", None)
        .await;
    assert_eq!(delete.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn duplicate_names_are_409() {
    let stack = Stack::new().await;
    stack.register("dup", json!({})).await;
    let again = stack
        .call(
            Route::SubcloudsRegister,
            "/v1.0/subclouds",
            Some(json!({"name": "dup", "software-version": "24.09"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.message(), "A subcloud named dup already exists");
}

#[tokio::test]
async fn bad_register_fields_are_400_naming_the_field() {
    let stack = Stack::new().await;
    let cases = [
        (json!({"software-version": "24.09"}), "'name' is required"),
        (json!({"name": "x1"}), "'software-version' is required"),
        (
            json!({"name": "123", "software-version": "24.09"}),
            "Invalid value for 'name'",
        ),
        (
            json!({"name": "x1", "software-version": "latest"}),
            "Invalid value for 'software-version'",
        ),
        (
            json!({"name": "x1", "software-version": "24.09", "management-state": "on"}),
            "Invalid value for 'management-state'",
        ),
        (
            json!({"name": "x1", "software-version": "24.09", "management-subnet": "10.0.0.0"}),
            "Invalid value for 'management-subnet'",
        ),
        (
            json!({"name": "x1", "software-version": "24.09", "agent-url": "10.0.0.1"}),
            "Invalid value for 'agent-url'",
        ),
        (
            json!({"name": "x1", "software-version": "24.09", "deploy-status": "restoring"}),
            "set only by a subcloud-backup restore",
        ),
        (
            json!({"name": "x1", "software-version": "24.09", "group_id": "nogroup"}),
            "Invalid group_id",
        ),
        (
            json!({"name": "x1", "software-version": "24.09", "color": "blue"}),
            "Unexpected parameter received: color",
        ),
        (
            json!({"name": 7, "software-version": "24.09"}),
            "Invalid value for 'name': must be a string",
        ),
    ];
    for (body, expected) in cases {
        let reply = stack
            .call(
                Route::SubcloudsRegister,
                "/v1.0/subclouds",
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            reply.body
        );
        assert!(
            reply.message().contains(expected),
            "{body}: {}",
            reply.message()
        );
    }
    let list = stack
        .call(Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    assert_eq!(list.body["subclouds"], json!([]), "nothing was registered");
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let stack = Stack::new().await;
    let malformed = stack
        .raw(
            Route::SubcloudsRegister,
            Method::POST,
            "/v1.0/subclouds",
            "{\"name\":",
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(malformed
        .message()
        .starts_with("Request body is not valid JSON"));
    let array = stack
        .raw(
            Route::SubcloudsRegister,
            Method::POST,
            "/v1.0/subclouds",
            "[]",
        )
        .await;
    assert_eq!(array.status, StatusCode::BAD_REQUEST);
    let huge = format!(
        "{{\"name\":\"x1\",\"description\":\"{}\"}}",
        "a".repeat(70 * 1024)
    );
    let too_large = stack
        .raw(
            Route::SubcloudsRegister,
            Method::POST,
            "/v1.0/subclouds",
            &huge,
        )
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    let wrong_method = stack
        .raw(
            Route::SubcloudsRegister,
            Method::PUT,
            "/v1.0/subclouds",
            "{}",
        )
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers["allow"], "GET, POST");
}

#[tokio::test]
async fn update_changes_what_was_given() {
    let stack = Stack::new().await;
    stack
        .register("edge1", json!({"agent-url": "https://10.0.0.5:8443"}))
        .await;
    let patch = json!({
        "management-state": "managed",
        "availability-status": "online",
        "deploy-status": "install-failed",
        "backup-status": "failed",
        "description": "rack 4",
        "location": "Kanata",
        "bootstrap-address": "10.20.0.9"
    });
    let reply = stack
        .call(Route::SubcloudsUpdate, "/v1.0/subclouds/edge1", Some(patch))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let sc = &reply.body;
    assert_eq!(sc["management-state"], "managed");
    assert_eq!(sc["availability-status"], "online");
    assert_eq!(sc["deploy-status"], "install-failed");
    assert_eq!(sc["backup-status"], "failed");
    assert_eq!(sc["description"], "rack 4");
    assert_eq!(sc["location"], "Kanata");
    assert_eq!(sc["agent-url"], "https://10.20.0.9:8443");
    assert_ne!(sc["updated-at"], sc["created-at"]);

    let shown = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/edge1", None)
        .await;
    assert_eq!(&shown.body, sc, "the update was stored");

    let url = stack
        .call(
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/edge1",
            Some(json!({"agent-url": "http://10.1.1.1:9000"})),
        )
        .await;
    assert_eq!(url.body["agent-url"], "http://10.1.1.1:9000");
}

#[tokio::test]
async fn bad_updates_are_400() {
    let stack = Stack::new().await;
    stack.register("edge2", json!({})).await;
    let cases = [
        (json!({}), "Nothing to update"),
        (
            json!({"management-state": "sideways"}),
            "Invalid value for 'management-state'",
        ),
        (json!({"availability-status": 1}), "must be a string"),
        (
            json!({"backup-status": "backing-up"}),
            "set only by a subcloud-backup operation",
        ),
        (
            json!({"deploy-status": "pre-restore"}),
            "set only by a subcloud-backup restore",
        ),
        (json!({"group_id": 4242}), "Invalid group_id"),
        (
            json!({"bootstrap-address": "10.0.0.300"}),
            "Invalid value for 'bootstrap-address'",
        ),
        (
            json!({"bootstrap-address": "10.0.0.3"}),
            "bootstrap-address needs the subcloud's agent-url",
        ),
        (
            json!({"name": "renamed"}),
            "Unexpected parameter received: name",
        ),
        (
            json!({"description": "x".repeat(256)}),
            "at most 255 characters",
        ),
    ];
    for (body, expected) in cases {
        let reply = stack
            .call(
                Route::SubcloudsUpdate,
                "/v1.0/subclouds/edge2",
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            reply.body
        );
        assert!(
            reply.message().contains(expected),
            "{body}: {}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn moving_between_groups_keeps_membership_exact() {
    let stack = Stack::new().await;
    let east = stack.create_group("east").await;
    let sc = stack.register("mover", json!({"group_id": "east"})).await;
    assert_eq!(sc["group_id"], east["id"]);

    // A group with a member cannot be deleted; after the member moves it can.
    let blocked = stack
        .call(Route::GroupsDelete, "/v1.0/subcloud-groups/east", None)
        .await;
    assert_eq!(blocked.status, StatusCode::CONFLICT);
    let moved = stack
        .call(
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/mover",
            Some(json!({"group_id": 1})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(moved.body["group_id"], 1);
    let members = stack
        .call(
            Route::GroupsMembers,
            "/v1.0/subcloud-groups/Default/subclouds",
            None,
        )
        .await;
    assert_eq!(members.body["subclouds"][0]["name"], "mover");
    let deleted = stack
        .call(Route::GroupsDelete, "/v1.0/subcloud-groups/east", None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
}

#[tokio::test]
async fn delete_requires_unmanaged_and_frees_the_name() {
    let stack = Stack::new().await;
    stack
        .register("gone", json!({"management-state": "managed"}))
        .await;
    let refused = stack
        .call(Route::SubcloudsDelete, "/v1.0/subclouds/gone", None)
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.message().contains("unmanage it first"));

    let unmanage = json!({"management-state": "unmanaged"});
    stack
        .call(
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/gone",
            Some(unmanage),
        )
        .await;
    let deleted = stack
        .call(Route::SubcloudsDelete, "/v1.0/subclouds/gone", None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body, serde_json::Value::Null);
    let shown = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/gone", None)
        .await;
    assert_eq!(shown.status, StatusCode::NOT_FOUND);

    let again = stack.register("gone", json!({})).await;
    assert_eq!(again["name"], "gone", "the name can be used again");
}

#[tokio::test]
async fn ids_are_unique_under_50_concurrent_registrations() {
    let stack = Stack::new().await;
    let registrations = (0..50).map(|i| {
        let body = json!({"name": format!("site{i}"), "software-version": "24.09"});
        stack.call(Route::SubcloudsRegister, "/v1.0/subclouds", Some(body))
    });
    let replies = futures::future::join_all(registrations).await;
    let mut ids: Vec<u64> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.body["id"].as_u64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50, "every registration got its own id");

    let list = stack
        .call(Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    assert_eq!(list.body["subclouds"].as_array().unwrap().len(), 50);
    let default = stack
        .call(
            Route::GroupsMembers,
            "/v1.0/subcloud-groups/1/subclouds",
            None,
        )
        .await;
    assert_eq!(default.body["subclouds"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_admit_exactly_one() {
    let stack = Stack::new().await;
    let attempts = (0..20).map(|_| {
        let body = json!({"name": "contested", "software-version": "24.09"});
        stack.call(Route::SubcloudsRegister, "/v1.0/subclouds", Some(body))
    });
    let replies = futures::future::join_all(attempts).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let conflicts = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT)
        .count();
    assert_eq!((ok, conflicts), (1, 19));
}

/// Sends `request` through a stack view whose first write is held, lands `claim` on the
/// same subcloud meanwhile, then lets the write go: the write's own condition must refuse it
/// (SPEC §3), as the read before it saw the slot free. Returns the write's answer.
async fn write_after_a_claim_landed(
    stack: &Stack,
    route: Route,
    path: &'static str,
    body: Option<serde_json::Value>,
    claim: (Route, &str, serde_json::Value),
) -> dcbackup_tests::Reply {
    let (pause, mut paused) = dcbackup_tests::pause_first_write();
    let writer = stack.intercepted(pause).await;
    let write = tokio::spawn(async move { writer.call(route, path, body).await });
    paused.reached().await;
    let (claim_route, claim_path, claim_body) = claim;
    let claimed = stack.call(claim_route, claim_path, Some(claim_body)).await;
    // SPEC §2: an accepted create answers 200, an accepted delete 204.
    let accepted = if claim_route == Route::BackupDelete {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    assert_eq!(claimed.status, accepted, "the claim: {:?}", claimed.body);
    paused.resume();
    write.await.expect("the write's task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_landing_between_a_patch_read_and_its_write_refuses_the_write() {
    let stack = Stack::new().await;
    stack
        .register(
            "held",
            json!({"management-state": "managed", "availability-status": "online",
                   "agent-url": "https://127.0.0.2:8443"}),
        )
        .await;
    // agent-url leaves a create valid: only the write's slot condition stops it.
    let reply = write_after_a_claim_landed(
        &stack,
        Route::SubcloudsUpdate,
        "/v1.0/subclouds/held",
        Some(json!({"agent-url": "https://127.0.0.3:8443"})),
        (
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            json!({"subcloud": "held"}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
    let shown = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/held", None)
        .await;
    assert_eq!(shown.body["agent-url"], "https://127.0.0.2:8443");
    assert_eq!(shown.body["updated-at"], shown.body["operation"]["since"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_landing_between_a_delete_read_and_its_write_refuses_the_delete() {
    let stack = Stack::new().await;
    let id = stack
        .register("kept", json!({"agent-url": "https://127.0.0.2:8443"}))
        .await["id"]
        .as_u64()
        .expect("an id");
    stack.add_backup(id, "24.09", false).await;
    let reply = write_after_a_claim_landed(
        &stack,
        Route::SubcloudsDelete,
        "/v1.0/subclouds/kept",
        None,
        (
            Route::BackupDelete,
            "/v1.0/subcloud-backup/delete/24.09",
            json!({"subcloud": "kept"}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
    let shown = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/kept", None)
        .await;
    assert_eq!(shown.status, StatusCode::OK, "not deleted");
    assert_eq!(shown.body["operation"]["kind"], "delete");
}
