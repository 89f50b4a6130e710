//! The stock dcmanager client against dcbackup (issue "the stock client works unchanged"):
//! every request it sends, replayed byte for byte from `compat/stock-client-requests.jsonl`
//! (captured from python-distributedcloud-client; see `compat/README.md`), and one small test
//! per compatibility rule.

use base64::Engine;
use dcbackup::api::Route;
use dcbackup::domain::Ref;
use dcbackup::wire::{SUBCLOUD_DETAIL_KEYS, SUBCLOUD_KEYS};
use dcbackup_tests::{token, Reply, Stack};
use http::{Method, StatusCode};
use lambda_http::Body;
use serde_json::{json, Value};
use std::path::PathBuf;

const PASSWORD: &str = "St4rlingX*";

/// One captured request of the stock client.
struct Captured {
    line: usize,
    what: String,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn captured() -> Vec<Captured> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compat/stock-client-requests.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let v: Value = serde_json::from_str(line).expect("a captured request is JSON");
            Captured {
                line: i + 1,
                what: v["what"].as_str().unwrap().to_owned(),
                method: v["method"].as_str().unwrap().parse().unwrap(),
                path: v["path"].as_str().unwrap().to_owned(),
                headers: v["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect(),
                body: v["body"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

/// The request as the client sent it, placeholders filled, and the route that serves it.
fn replayable(c: &Captured, token: &str) -> (Route, lambda_http::Request) {
    let password = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
    let fill = |s: &str| {
        s.replace("<TOKEN>", token)
            .replace("<BASE64-PASSWORD>", &password)
    };
    let routes: Vec<Route> = Route::for_path(&c.path)
        .into_iter()
        .filter(|r| r.method() == c.method)
        .collect();
    assert_eq!(routes.len(), 1, "line {}: {} {}", c.line, c.method, c.path);
    let mut builder = http::Request::builder()
        .method(c.method.clone())
        .uri(&c.path);
    for (name, value) in &c.headers {
        builder = builder.header(name, fill(value));
    }
    let body = if c.body.is_empty() {
        Body::Empty
    } else {
        Body::Text(fill(&c.body))
    };
    (routes[0], builder.body(body).unwrap())
}

/// The inventory the client's requests name: group `edge-west` (id 3) holding `subcloud3`
/// and `subcloud4`, each with an agent and central and local backups of 24.09, managed and
/// online for a backup or delete, unmanaged for a restore. `edge-east` (id 2) is empty.
async fn seeded(restore: bool) -> Stack {
    let stack = Stack::new().await;
    assert_eq!(stack.create_group("edge-east").await["id"], 2);
    assert_eq!(stack.create_group("edge-west").await["id"], 3);
    for (i, name) in ["subcloud3", "subcloud4"].into_iter().enumerate() {
        let state = if restore {
            json!({"management-state": "unmanaged", "availability-status": "offline"})
        } else {
            json!({"management-state": "managed", "availability-status": "online"})
        };
        let mut body =
            json!({"group_id": "edge-west", "agent-url": format!("http://127.0.0.1:1800{i}")});
        body.as_object_mut()
            .unwrap()
            .extend(state.as_object().unwrap().clone());
        let id = stack.register(name, body).await["id"].as_u64().unwrap();
        stack.add_backup(id, "24.09", false).await;
        stack.add_backup(id, "24.09", true).await;
    }
    stack
}

/// Every key the client reads of a subcloud, and a non-null `error-description`.
fn assert_subcloud(sc: &Value, context: &str) {
    for key in SUBCLOUD_KEYS {
        assert!(sc.get(key).is_some(), "{context}: {key} missing in {sc}");
    }
    assert!(
        sc["error-description"].is_string(),
        "{context}: error-description is {}",
        sc["error-description"]
    );
}

/// What dcbackup answers each captured request with (SPEC §2), by line: the status, and
/// either the names in `subclouds` or the error message.
enum Expect {
    List(&'static str),
    Detail,
    Subclouds(&'static [&'static str]),
    NoContent,
    Error(StatusCode, &'static str),
}

fn expected(line: usize) -> Expect {
    match line {
        1 => Expect::List("subclouds"),
        2 => Expect::Detail,
        3 => Expect::List("subcloud_groups"),
        4 | 7 | 9 | 11 => Expect::Subclouds(&["subcloud3"]),
        5 => Expect::Error(
            StatusCode::BAD_REQUEST,
            "'subcloud' and 'group' parameters should not be given at the same time",
        ),
        6 => Expect::Error(
            StatusCode::BAD_REQUEST,
            "Invalid type for backup_values: Expected dict, got list",
        ),
        8 | 12 => Expect::Subclouds(&["subcloud3", "subcloud4"]),
        10 => Expect::Error(StatusCode::NOT_FOUND, "Subcloud not found"),
        13..=16 => Expect::NoContent,
        _ => panic!("line {line} of the captured requests has no expectation here"),
    }
}

#[tokio::test]
async fn every_request_of_the_stock_client_is_answered_as_dcmanager_would() {
    let requests = captured();
    assert_eq!(requests.len(), 16, "a captured request was added or lost");
    for c in &requests {
        let stack = seeded(c.path.ends_with("/restore")).await;
        let (route, request) = replayable(c, &stack.admin_token);
        let reply = stack.request(route, request).await;
        let context = format!("line {} ({}): {:?}", c.line, c.what, reply.body);
        match expected(c.line) {
            Expect::List(key) => {
                assert_eq!(reply.status, StatusCode::OK, "{context}");
                let items = reply.body[key].as_array().expect(&context);
                assert!(!items.is_empty(), "{context}");
                if key == "subclouds" {
                    items.iter().for_each(|sc| assert_subcloud(sc, &context));
                }
            }
            Expect::Detail => {
                assert_eq!(reply.status, StatusCode::OK, "{context}");
                assert_subcloud(&reply.body, &context);
                for key in SUBCLOUD_DETAIL_KEYS {
                    assert!(reply.body.get(key).is_some(), "{context}: {key}");
                }
            }
            Expect::Subclouds(names) => {
                assert_eq!(reply.status, StatusCode::OK, "{context}");
                let listed = reply.body["subclouds"].as_array().expect(&context);
                let got: Vec<&str> = listed
                    .iter()
                    .map(|sc| sc["name"].as_str().unwrap())
                    .collect();
                assert_eq!(got, names, "{context}");
                listed.iter().for_each(|sc| assert_subcloud(sc, &context));
                assert_eq!(reply.body["skipped"], json!([]), "{context}");
                assert_eq!(reply.body["failed"], json!([]), "{context}");
            }
            Expect::NoContent => {
                assert_eq!(reply.status, StatusCode::NO_CONTENT, "{context}");
            }
            Expect::Error(status, message) => {
                assert_eq!(reply.status, status, "{context}");
                assert_eq!(reply.message(), message, "{context}");
            }
        }
    }
}

// ---- one rule at a time -----------------------------------------------------------------

async fn call(stack: &Stack, route: Route, path: &str, body: Option<Value>) -> Reply {
    stack.call(route, path, body).await
}

#[tokio::test]
async fn collection_paths_answer_with_a_trailing_slash() {
    let stack = seeded(false).await;
    let list = call(&stack, Route::SubcloudsList, "/v1.0/subclouds/", None).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let groups = call(&stack, Route::GroupsList, "/v1.0/subcloud-groups/", None).await;
    assert_eq!(groups.status, StatusCode::OK, "{:?}", groups.body);
    let body = json!({"subcloud": "subcloud3"});
    let create = call(
        &stack,
        Route::BackupCreate,
        "/v1.0/subcloud-backup/",
        Some(body),
    )
    .await;
    assert_eq!(create.status, StatusCode::OK, "{:?}", create.body);
    let detail = "/v1.0/subclouds/subcloud4/detail/";
    let detail = call(&stack, Route::SubcloudsDetail, detail, None).await;
    assert_eq!(detail.status, StatusCode::OK, "{:?}", detail.body);
}

#[tokio::test]
async fn reinstall_flags_sent_false_are_no_request_and_true_is_refused() {
    let stack = seeded(true).await;
    let path = Route::BackupRestore.pattern();
    let body = json!({"subcloud": "subcloud3", "with_install": false, "auto": "false",
                      "factory": "False", "on_site": false, "release": ""});
    let reply = call(&stack, Route::BackupRestore, path, Some(body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["subclouds"][0]["deploy-status"], "pre-restore");
    for field in ["with_install", "auto", "factory", "on_site"] {
        let body = json!({"subcloud": "subcloud4", field: "true"});
        let reply = call(&stack, Route::BackupRestore, path, Some(body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(reply.message(), format!("{field} is not supported"));
        let body = json!({"subcloud": "subcloud4", field: 1});
        let reply = call(&stack, Route::BackupRestore, path, Some(body)).await;
        assert_eq!(
            reply.message(),
            format!("Invalid {field} value, should be boolean")
        );
    }
}

#[tokio::test]
async fn delete_takes_the_paths_release_again_in_the_body() {
    let stack = seeded(false).await;
    let path = "/v1.0/subcloud-backup/delete/24.09";
    let body = json!({"subcloud": "subcloud3", "release": "24.09"});
    let same = call(&stack, Route::BackupDelete, path, Some(body)).await;
    assert_eq!(same.status, StatusCode::NO_CONTENT, "{:?}", same.body);
    let body = json!({"subcloud": "subcloud4", "release": "25.09"});
    let other = call(&stack, Route::BackupDelete, path, Some(body)).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert!(other.message().contains("differs"), "{}", other.message());
}

#[tokio::test]
async fn error_description_starts_as_no_errors_and_a_new_operation_resets_it() {
    let stack = seeded(false).await;
    let fresh = stack.register("fresh", json!({})).await;
    assert_eq!(fresh["error-description"], "No errors present");

    // A create whose lease expired at once, recovered: the failure is recorded; then a new
    // operation's claim resets error-description.
    let subcloud4 = Ref::parse("ref", "subcloud4").unwrap();
    let id = stack.app.inventory.subcloud(&subcloud4).await.unwrap().id;
    let expired = dcbackup::store::ClaimRequest::new(
        id,
        dcbackup::domain::OpKind::Create,
        dcbackup::domain::epoch_now() - 10,
        1,
    );
    stack.claim(&expired).await;
    let sc = stack.app.inventory.subcloud(&subcloud4).await.unwrap();
    assert!(stack
        .app
        .inventory
        .recover_expired(&sc, dcbackup::domain::epoch_now())
        .await
        .unwrap());
    let failed = call(
        &stack,
        Route::SubcloudsShow,
        "/v1.0/subclouds/subcloud4",
        None,
    )
    .await;
    assert_eq!(failed.body["backup-status"], "validate-failed");
    assert!(failed.body["error-description"]
        .as_str()
        .unwrap()
        .contains("lease expired"));

    let body = json!({"subcloud": "subcloud4"});
    let again = call(
        &stack,
        Route::BackupCreate,
        "/v1.0/subcloud-backup",
        Some(body),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(
        again.body["subclouds"][0]["error-description"],
        "No errors present"
    );
    let shown = call(
        &stack,
        Route::SubcloudsShow,
        "/v1.0/subclouds/subcloud4",
        None,
    )
    .await;
    assert_eq!(shown.body["error-description"], "No errors present");
}

#[tokio::test]
async fn detail_adds_the_keys_subcloud_show_detail_reads() {
    let stack = seeded(false).await;
    let reader = token(&["reader"], "admin");
    let path = "/v1.0/subclouds/subcloud3/detail";
    let detail = stack
        .call_as(&reader, Route::SubcloudsDetail, path, None)
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{:?}", detail.body);
    assert_subcloud(&detail.body, "detail");
    assert_eq!(detail.body["oam_floating_ip"], Value::Null);
    assert_eq!(detail.body["deploy_config_sync_status"], "unknown");
    assert_eq!(detail.body["region_name"], detail.body["region-name"]);
    assert!(detail.body["region_name"].is_string());
    let missing = call(
        &stack,
        Route::SubcloudsDetail,
        "/v1.0/subclouds/nope/detail",
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.message(), "Subcloud not found");
    let nobody = stack
        .call_as(
            &token(&["nobody"], "admin"),
            Route::SubcloudsDetail,
            path,
            None,
        )
        .await;
    assert_eq!(nobody.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn subclouds_carry_the_keys_the_client_maps_with_dcmanagers_empty_values() {
    let stack = seeded(false).await;
    let shown = call(
        &stack,
        Route::SubcloudsShow,
        "/v1.0/subclouds/subcloud3",
        None,
    )
    .await;
    let sc = &shown.body;
    for key in [
        "peer_group_id",
        "rehome_data",
        "prestage-software-version",
        "prestage-status",
        "prestage-versions",
        "info_message",
        "data_install",
        "data_upgrade",
    ] {
        assert_eq!(sc[key], Value::Null, "{key}");
    }
    assert_eq!(sc["sync_status"], "unknown");
    assert_eq!(sc["endpoint_sync_status"], json!([]));
    assert_eq!(sc["openstack-installed"], false);
}

#[tokio::test]
async fn any_body_that_is_not_multipart_is_read_as_json() {
    // curl -d sends application/x-www-form-urlencoded; a client may send anything else.
    for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
        let stack = seeded(false).await;
        let send = |method: Method, route: Route, path: &str, body: Value| {
            let request = http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", content_type)
                .header("x-auth-token", &stack.admin_token)
                .body(Body::Text(body.to_string()))
                .unwrap();
            stack.request(route, request)
        };
        let create = send(
            Method::POST,
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            json!({"group": "edge-west"}),
        )
        .await;
        assert_eq!(
            create.status,
            StatusCode::OK,
            "{content_type}: {:?}",
            create.body
        );
        let delete = send(
            Method::PATCH,
            Route::BackupDelete,
            "/v1.0/subcloud-backup/delete/24.09",
            json!({"group": "edge-east"}),
        )
        .await;
        assert_eq!(
            delete.message(),
            "No subclouds present in group",
            "{content_type}"
        );
        let restore = send(
            Method::PATCH,
            Route::BackupRestore,
            "/v1.0/subcloud-backup/restore",
            json!({"subcloud": "nope"}),
        )
        .await;
        assert_eq!(restore.message(), "Subcloud not found", "{content_type}");
        // The inventory routes read bodies the same way.
        let register = send(
            Method::POST,
            Route::SubcloudsRegister,
            "/v1.0/subclouds",
            json!({"name": "formed", "software-version": "24.09"}),
        )
        .await;
        assert_eq!(
            register.status,
            StatusCode::OK,
            "{content_type}: {:?}",
            register.body
        );
    }
}

#[tokio::test]
async fn a_subclouds_backups_are_listed_newest_first() {
    use dcbackup::domain::OpId;
    use dcbackup::store::{BackupLocation, BackupRecord};
    let stack = seeded(false).await;
    let subcloud3 = Ref::parse("ref", "subcloud3").unwrap();
    let id = stack.app.inventory.subcloud(&subcloud3).await.unwrap().id;
    // Op ids are random, so the table's key order is not the time order.
    for at in ["2026-11-02", "2026-11-03", "2026-11-01"] {
        let op_id = OpId::new();
        let release = dcbackup::domain::Release::parse("r", "24.09").unwrap();
        let record = BackupRecord {
            subcloud_id: id,
            backup_id: BackupRecord::id(&release, &op_id),
            release,
            location: BackupLocation::Central,
            size: 1,
            sha256: "0".repeat(64),
            s3_key: None,
            op_id,
            schedule_id: None,
            created_at: format!("{at} 10:00:00.000000"),
        };
        stack.app.inventory.put_backup(&record).await.unwrap();
    }
    let listed = call(
        &stack,
        Route::BackupsList,
        "/v1.0/subclouds/subcloud3/backups",
        None,
    )
    .await;
    let times: Vec<&str> = listed.body["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["created-at"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "2026-11-03 10:00:00.000000",
            "2026-11-02 10:00:00.000000",
            "2026-11-01 10:00:00.000000"
        ]
    );
}
