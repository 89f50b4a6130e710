//! Token and policy checks through the real handlers: every route refuses a missing or bad
//! token, write routes refuse readers, and a policy override file changes the outcome.

use dcbackup::api::Route;
use dcbackup_tests::{token, Stack};
use http::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Each route with a request that succeeds for an admin on a seeded stack.
fn requests() -> Vec<(Route, &'static str, Option<Value>)> {
    vec![
        (Route::SubcloudsList, "/v1.0/subclouds", None),
        (
            Route::SubcloudsRegister,
            "/v1.0/subclouds",
            Some(json!({"name": "new1", "software-version": "24.09"})),
        ),
        (Route::SubcloudsShow, "/v1.0/subclouds/sc1", None),
        (
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/sc1",
            Some(json!({"description": "d"})),
        ),
        (Route::SubcloudsDelete, "/v1.0/subclouds/sc1", None),
        (Route::GroupsList, "/v1.0/subcloud-groups", None),
        (
            Route::GroupsCreate,
            "/v1.0/subcloud-groups",
            Some(json!({"name": "g-new"})),
        ),
        (Route::GroupsShow, "/v1.0/subcloud-groups/g1", None),
        (
            Route::GroupsUpdate,
            "/v1.0/subcloud-groups/g1",
            Some(json!({"description": "d"})),
        ),
        (Route::GroupsDelete, "/v1.0/subcloud-groups/g1", None),
        (
            Route::GroupsMembers,
            "/v1.0/subcloud-groups/g1/subclouds",
            None,
        ),
    ]
}

async fn seeded(policy: Option<&std::path::Path>) -> Stack {
    let stack = Stack::with_policy(policy).await;
    stack.create_group("g1").await;
    stack.register("sc1", json!({})).await;
    stack
}

fn is_write(route: Route) -> bool {
    route.method() != http::Method::GET
}

/// A request path for `route`: its pattern with every `{placeholder}` filled in.
fn sample_path(route: Route) -> String {
    route
        .pattern()
        .split('/')
        .map(|segment| match segment {
            "{release_version}" => "24.09".to_owned(),
            "{op_id}" => uuid::Uuid::new_v4().to_string(),
            s if s.starts_with('{') => "sc1".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An HS256 token as the test issuer would mint it, from another configuration.
fn minted_by(issuer: &str, secret: &str) -> String {
    dcbackup::auth::AuthConfig::builder(issuer, dcbackup_tests::AUDIENCE)
        .algorithms([dcbackup::auth::SigningAlgorithm::Hs256])
        .hs256_secret(secret)
        .build()
        .unwrap()
        .mint_local_token(
            "mallory",
            &["admin".into()],
            "admin",
            Duration::from_secs(600),
        )
        .unwrap()
}

/// Driven by the one route table: a route added later is covered without editing this test.
#[tokio::test]
async fn no_token_or_a_bad_token_is_401_on_every_route() {
    let stack = seeded(None).await;
    let forged = {
        let mut t = token(&["admin"], "admin");
        t.push('x');
        t
    };
    let bad_tokens = [
        ("forged signature", forged),
        (
            "another issuer",
            minted_by("https://evil.test", dcbackup_tests::SECRET),
        ),
        (
            "another secret",
            minted_by(
                dcbackup_tests::ISSUER,
                "another-secret-0123456789abcdef0123",
            ),
        ),
        ("not a JWT", "not-a-token".to_owned()),
    ];
    for route in Route::ALL {
        let path = sample_path(route);
        let body = (route.method() != http::Method::GET).then(|| json!({}));
        let request = dcbackup_tests::json_request(route.method(), &path, body.clone());
        let missing = stack.request(route, request).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{route:?} {path}");
        assert_eq!(missing.headers["www-authenticate"], "Bearer", "{route:?}");
        assert_eq!(missing.body["error"]["code"], 401, "{route:?}");

        for (what, bad) in &bad_tokens {
            let reply = stack.call_as(bad, route, &path, body.clone()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{route:?} {what}");
            assert!(
                reply.headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer"),
                "{route:?} {what}"
            );
            assert_eq!(reply.body["error"]["code"], 401, "{route:?} {what}");
            assert!(
                !reply.body.to_string().contains(bad.as_str()),
                "{route:?}: the token is not echoed"
            );
        }
    }
    let shown = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/sc1", None)
        .await;
    assert_eq!(shown.status, StatusCode::OK, "nothing was changed");
    assert_eq!(shown.body["backup-status"], Value::Null);
    assert!(stack.operations().await.is_empty(), "nothing was claimed");
    assert!(stack.drain_jobs().await.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn readers_read_but_cannot_write() {
    let reader = token(&["reader"], "admin");
    for (route, path, body) in requests() {
        // A fresh stack each time, so a read is never answered 404 by an earlier write.
        let stack = seeded(None).await;
        let reply = stack.call_as(&reader, route, path, body).await;
        if is_write(route) {
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "{path}: {:?}",
                reply.body
            );
            assert!(
                reply.message().contains(route.policy_rule()),
                "{}",
                reply.message()
            );
        } else {
            assert_eq!(reply.status, StatusCode::OK, "{path}: {:?}", reply.body);
        }
    }
}

#[tokio::test]
async fn admins_pass_every_route() {
    let admin = token(&["admin"], "admin");
    for (route, path, body) in requests() {
        let stack = seeded(None).await;
        let reply = stack.call_as(&admin, route, path, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {:?}", reply.body);
    }
}

#[tokio::test]
async fn projects_other_than_admin_and_services_are_refused() {
    let stack = seeded(None).await;
    let outsider = token(&["admin"], "tenant-a");
    let reply = stack
        .call_as(&outsider, Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let services = token(&["configurator"], "services");
    let reply = stack
        .call_as(
            &services,
            Route::GroupsCreate,
            "/v1.0/subcloud-groups",
            Some(json!({"name": "cfg"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

#[tokio::test]
async fn operators_may_manage_and_unmanage_but_not_modify() {
    let stack = seeded(None).await;
    let operator = token(&["operator"], "admin");
    let manage = stack
        .call_as(
            &operator,
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/sc1",
            Some(json!({"management-state": "managed"})),
        )
        .await;
    assert_eq!(manage.status, StatusCode::OK, "{:?}", manage.body);
    assert_eq!(manage.body["management-state"], "managed");

    let modify = stack
        .call_as(
            &operator,
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/sc1",
            Some(json!({"management-state": "unmanaged", "location": "elsewhere"})),
        )
        .await;
    assert_eq!(modify.status, StatusCode::FORBIDDEN);
    assert!(modify.message().contains("dc_api:subclouds:modify"));
    let after = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/sc1", None)
        .await;
    assert_eq!(
        after.body["management-state"], "managed",
        "a refused update changes nothing"
    );

    let register = stack
        .call_as(
            &operator,
            Route::SubcloudsRegister,
            "/v1.0/subclouds",
            Some(json!({"name": "op1", "software-version": "24.09"})),
        )
        .await;
    assert_eq!(register.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_policy_override_file_changes_the_outcome() {
    let dir = std::env::temp_dir().join(format!("dcbackup-policy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.yaml");
    std::fs::write(
        &file,
        "\"dc_api:subclouds:get\": \"role:admin\"\n\"dc_api:subcloud_groups:create\": \"rule:reader_or_operator_or_configurator\"\n",
    )
    .unwrap();
    let stack = seeded(Some(&file)).await;
    let reader = token(&["reader"], "admin");

    let list = stack
        .call_as(&reader, Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    assert_eq!(
        list.status,
        StatusCode::FORBIDDEN,
        "the override narrowed the read rule"
    );
    let create = stack
        .call_as(
            &reader,
            Route::GroupsCreate,
            "/v1.0/subcloud-groups",
            Some(json!({"name": "by-reader"})),
        )
        .await;
    assert_eq!(
        create.status,
        StatusCode::OK,
        "the override widened the create rule: {:?}",
        create.body
    );
    let groups = stack
        .call_as(&reader, Route::GroupsList, "/v1.0/subcloud-groups", None)
        .await;
    assert_eq!(
        groups.status,
        StatusCode::OK,
        "rules not overridden keep their defaults"
    );

    std::fs::write(&file, "\"dc_api:subclouds:get\": \"role:admin and (\"\n").unwrap();
    let err = dcbackup::auth::AuthConfig::builder("i", "a")
        .algorithms([dcbackup::auth::SigningAlgorithm::Hs256])
        .hs256_secret(dcbackup_tests::SECRET)
        .policy_file(&file)
        .build()
        .and_then(dcbackup::auth::Authenticator::new)
        .expect_err("a bad policy file fails the start");
    let message = err.to_string();
    assert!(
        message.contains("policy.yaml") && message.contains("dc_api:subclouds:get"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
