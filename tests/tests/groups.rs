//! The subcloud group routes against DynamoDB Local: each happy path and each error.

use dcbackup::api::Route;
use dcbackup_tests::Stack;
use http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn default_group_always_exists() {
    let stack = Stack::new().await;
    let list = stack
        .call(Route::GroupsList, "/v1.0/subcloud-groups", None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let groups = list.body["subcloud_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["id"], 1);
    assert_eq!(groups[0]["name"], "Default");
    for key in [
        "id",
        "name",
        "description",
        "update_apply_type",
        "max_parallel_subclouds",
        "created-at",
        "updated-at",
    ] {
        assert!(groups[0].get(key).is_some(), "{key}");
    }
    // Provisioning twice changes nothing.
    dcbackup::provision::provision(&stack.clients, &stack.resources)
        .await
        .unwrap();
    let again = stack
        .call(Route::GroupsList, "/v1.0/subcloud-groups", None)
        .await;
    assert_eq!(again.body, list.body);
}

#[tokio::test]
async fn create_show_update_delete() {
    let stack = Stack::new().await;
    let created = stack
        .call(
            Route::GroupsCreate,
            "/v1.0/subcloud-groups",
            Some(json!({"name": "west", "description": "west coast", "update_apply_type": "serial", "max_parallel_subclouds": 5})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
    let g = &created.body;
    assert_eq!(g["id"], 2, "group ids continue after Default");
    assert_eq!(g["update_apply_type"], "serial");
    assert_eq!(g["max_parallel_subclouds"], 5);

    let by_name = stack
        .call(Route::GroupsShow, "/v1.0/subcloud-groups/west", None)
        .await;
    let by_id = stack
        .call(Route::GroupsShow, "/v1.0/subcloud-groups/2", None)
        .await;
    assert_eq!(by_name.body, *g);
    assert_eq!(by_id.body, *g);

    let updated = stack
        .call(
            Route::GroupsUpdate,
            "/v1.0/subcloud-groups/west",
            Some(
                json!({"name": "pacific", "max_parallel_subclouds": "3", "description": "renamed"}),
            ),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
    assert_eq!(updated.body["name"], "pacific");
    assert_eq!(updated.body["max_parallel_subclouds"], 3);
    let old = stack
        .call(Route::GroupsShow, "/v1.0/subcloud-groups/west", None)
        .await;
    assert_eq!(
        old.status,
        StatusCode::NOT_FOUND,
        "the old name is released"
    );
    stack.create_group("west").await;

    let deleted = stack
        .call(Route::GroupsDelete, "/v1.0/subcloud-groups/pacific", None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let gone = stack
        .call(Route::GroupsShow, "/v1.0/subcloud-groups/2", None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn defaults_for_a_new_group() {
    let stack = Stack::new().await;
    let g = stack
        .call(
            Route::GroupsCreate,
            "/v1.0/subcloud-groups",
            Some(json!({"name": "plain"})),
        )
        .await;
    assert_eq!(g.body["update_apply_type"], "parallel");
    assert_eq!(g.body["max_parallel_subclouds"], 2);
    assert_eq!(g.body["description"], "");
}

#[tokio::test]
async fn errors() {
    let stack = Stack::new().await;
    stack.create_group("taken").await;
    stack.create_group("other").await;
    stack.register("member", json!({"group_id": "taken"})).await;

    let create = |body| stack.call(Route::GroupsCreate, "/v1.0/subcloud-groups", Some(body));
    let dup = create(json!({"name": "taken"})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.message(), "A subcloud group named taken already exists");
    for (body, expected) in [
        (json!({}), "'name' is required"),
        (json!({"name": "42"}), "cannot be only digits"),
        (
            json!({"name": "g", "max_parallel_subclouds": 0}),
            "'max_parallel_subclouds': must be between 1",
        ),
        (
            json!({"name": "g", "update_apply_type": "random"}),
            "'update_apply_type'",
        ),
        (
            json!({"name": "g", "extra": true}),
            "Unexpected parameter received: extra",
        ),
    ] {
        let reply = create(body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            reply.message().contains(expected),
            "{body}: {}",
            reply.message()
        );
    }

    let rename_taken = stack
        .call(
            Route::GroupsUpdate,
            "/v1.0/subcloud-groups/other",
            Some(json!({"name": "taken"})),
        )
        .await;
    assert_eq!(rename_taken.status, StatusCode::CONFLICT);
    let rename_default = stack
        .call(
            Route::GroupsUpdate,
            "/v1.0/subcloud-groups/Default",
            Some(json!({"name": "Main"})),
        )
        .await;
    assert_eq!(rename_default.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        rename_default.message(),
        "The Default subcloud group cannot be renamed"
    );
    let empty_patch = stack
        .call(
            Route::GroupsUpdate,
            "/v1.0/subcloud-groups/other",
            Some(json!({})),
        )
        .await;
    assert_eq!(empty_patch.status, StatusCode::BAD_REQUEST);

    let delete_default = stack
        .call(Route::GroupsDelete, "/v1.0/subcloud-groups/1", None)
        .await;
    assert_eq!(delete_default.status, StatusCode::BAD_REQUEST);
    let delete_busy = stack
        .call(Route::GroupsDelete, "/v1.0/subcloud-groups/taken", None)
        .await;
    assert_eq!(delete_busy.status, StatusCode::CONFLICT);
    assert!(
        delete_busy.message().contains("still has 1 subcloud"),
        "{}",
        delete_busy.message()
    );

    for (route, path) in [
        (Route::GroupsShow, "/v1.0/subcloud-groups/nope"),
        (Route::GroupsShow, "/v1.0/subcloud-groups/77"),
        (Route::GroupsDelete, "/v1.0/subcloud-groups/nope"),
        (Route::GroupsMembers, "/v1.0/subcloud-groups/nope/subclouds"),
    ] {
        let reply = stack.call(route, path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let update_missing = stack
        .call(
            Route::GroupsUpdate,
            "/v1.0/subcloud-groups/nope",
            Some(json!({"description": "d"})),
        )
        .await;
    assert_eq!(update_missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_are_listed_per_group() {
    let stack = Stack::new().await;
    stack.create_group("north").await;
    stack.create_group("south").await;
    for (name, group) in [
        ("n1", "north"),
        ("n2", "north"),
        ("s1", "south"),
        ("d1", "Default"),
    ] {
        stack.register(name, json!({"group_id": group})).await;
    }
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["subclouds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let north = stack
        .call(
            Route::GroupsMembers,
            "/v1.0/subcloud-groups/north/subclouds",
            None,
        )
        .await;
    assert_eq!(north.status, StatusCode::OK);
    assert_eq!(names(&north.body), ["n1", "n2"]);
    let south = stack
        .call(
            Route::GroupsMembers,
            "/v1.0/subcloud-groups/3/subclouds",
            None,
        )
        .await;
    assert_eq!(names(&south.body), ["s1"]);
}

/// A fresh deployment holds tables and no items (the SAM template creates nothing else): the
/// first registrations, racing, create Default on that first need; user groups never take
/// id 1 nor the name Default.
#[tokio::test]
async fn a_fresh_stack_gets_default_on_first_register() {
    let stack = Stack::new().await;
    let groups = stack
        .clients
        .dynamodb
        .scan()
        .table_name(&stack.resources.groups_table)
        .send()
        .await
        .unwrap();
    assert_eq!(groups.count, 0, "provisioning made no items");

    let names: Vec<String> = (0..8).map(|i| format!("first{i}")).collect();
    let registrations = names.iter().map(|name| stack.register(name, json!({})));
    for registered in futures::future::join_all(registrations).await {
        assert_eq!(registered["group_id"], 1, "{registered}");
    }
    let default = stack
        .call(Route::GroupsShow, "/v1.0/subcloud-groups/Default", None)
        .await;
    assert_eq!(default.status, StatusCode::OK, "{:?}", default.body);
    assert_eq!(default.body["id"], 1);
    let members = stack
        .call(
            Route::GroupsMembers,
            "/v1.0/subcloud-groups/1/subclouds",
            None,
        )
        .await;
    assert_eq!(members.body["subclouds"].as_array().unwrap().len(), 8);

    let east = stack.create_group("east").await;
    assert_eq!(east["id"], 2, "user groups start after Default");
    let taken = stack
        .call(
            Route::GroupsCreate,
            "/v1.0/subcloud-groups",
            Some(json!({"name": "Default"})),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{:?}", taken.body);
    let renamed = stack
        .call(
            Route::GroupsUpdate,
            "/v1.0/subcloud-groups/east",
            Some(json!({"name": "Default"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::CONFLICT, "{:?}", renamed.body);
}

/// A group created before anything was registered still leaves id 1 to Default, which the
/// first register then makes.
#[tokio::test]
async fn a_group_created_first_on_a_fresh_stack_is_not_id_1() {
    let stack = Stack::new().await;
    let east = stack.create_group("east").await;
    assert_eq!(east["id"], 2, "{east}");
    let registered = stack.register("first", json!({})).await;
    assert_eq!(registered["group_id"], 1, "{registered}");
    let default = stack
        .call(Route::GroupsShow, "/v1.0/subcloud-groups/1", None)
        .await;
    assert_eq!(default.body["name"], "Default", "{:?}", default.body);
}

/// Before anything was registered, Default is listed and shown all the same.
#[tokio::test]
async fn a_fresh_stack_lists_and_shows_default() {
    let stack = Stack::new().await;
    let list = stack
        .call(Route::GroupsList, "/v1.0/subcloud-groups", None)
        .await;
    assert_eq!(
        list.body["subcloud_groups"][0]["name"], "Default",
        "{:?}",
        list.body
    );
    let fresh = Stack::new().await;
    let shown = fresh
        .call(Route::GroupsShow, "/v1.0/subcloud-groups/1", None)
        .await;
    assert_eq!(shown.body["name"], "Default", "{:?}", shown.body);
}
