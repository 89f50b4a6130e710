//! What the functions log: one JSON object a line, with the operation id where there is one,
//! and never a token, a password or a secret, whatever the request carried.

use dcbackup::api::Route;
use dcbackup_tests::{token, Stack, SECRET};
use serde_json::{json, Value};

#[tokio::test]
async fn logs_are_json_with_op_ids_and_carry_no_secret() {
    let captured = dcbackup_tests::capture_logs();

    let stack = Stack::new().await;
    let ready = json!({"management-state": "managed", "availability-status": "online"});
    stack.register("logged", ready).await;
    let password = "c3lzYWRtaW4tU2VjcjN0IQ=="; // base64 of a password
    let accepted = stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"subcloud": "logged", "sysadmin_password": password,
                        "backup_values": {"registry_password": "Hunter2-registry"}})),
        )
        .await;
    assert_eq!(accepted.status, http::StatusCode::OK, "{:?}", accepted.body);
    let op_id = accepted.body["subclouds"][0]["operation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The stock client's way: multipart, the password as a field, values as a YAML file.
    stack
        .register(
            "parted",
            json!({"management-state": "managed", "availability-status": "online"}),
        )
        .await;
    let multipart = format!(
        "--B0undary\r\nContent-Disposition: form-data; name=\"subcloud\"\r\n\r\nparted\r\n\
         --B0undary\r\nContent-Disposition: form-data; name=\"sysadmin_password\"\r\n\r\n{password}\r\n\
         --B0undary\r\nContent-Disposition: form-data; name=\"backup_values\"; filename=\"v.yaml\"\r\n\
         Content-Type: application/x-yaml\r\n\r\nansible_become_pass: Hunter3-become\r\n--B0undary--\r\n"
    );
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri("/v1.0/subcloud-backup")
        .header("content-type", "multipart/form-data; boundary=B0undary")
        .header("x-auth-token", &stack.admin_token)
        .body(lambda_http::Body::Binary(multipart.into_bytes()))
        .unwrap();
    let reply = stack.request(Route::BackupCreate, request).await;
    assert_eq!(reply.status, http::StatusCode::OK, "{:?}", reply.body);
    // Restore and delete carry the password too.
    let restorable = stack
        .register("restorable", json!({"agent-url": "http://127.0.0.1:18001"}))
        .await;
    stack
        .add_backup(restorable["id"].as_u64().unwrap(), "24.09", false)
        .await;
    let restore = json!({"subcloud": "restorable", "sysadmin_password": password,
        "restore_values": {"bootstrap_address": {"restorable": "127.0.0.1"}, "admin_password": "Hunter4-admin"}});
    let reply = stack
        .call(
            Route::BackupRestore,
            "/v1.0/subcloud-backup/restore",
            Some(restore),
        )
        .await;
    assert_eq!(reply.status, http::StatusCode::OK, "{:?}", reply.body);
    stack.create_group("dg").await;
    stack.register("deletable", json!({"group_id": "dg"})).await;
    let delete = json!({"group": "dg", "sysadmin_password": password});
    let reply = stack
        .call(
            Route::BackupDelete,
            "/v1.0/subcloud-backup/delete/24.09",
            Some(delete),
        )
        .await;
    assert_eq!(
        reply.status,
        http::StatusCode::NO_CONTENT,
        "{:?}",
        reply.body
    );

    let mut forged = token(&["admin"], "admin");
    forged.replace_range(forged.len() - 4.., "AAAA");
    let refused = stack
        .call_as(&forged, Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    assert_eq!(refused.status, http::StatusCode::UNAUTHORIZED);
    let reader = token(&["reader"], "admin");
    let denied = stack
        .call_as(
            &reader,
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"subcloud": "logged"})),
        )
        .await;
    assert_eq!(denied.status, http::StatusCode::FORBIDDEN);

    let text = captured.text();
    assert!(!text.is_empty(), "the handlers logged");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["op_id"] == op_id.as_str()),
        "the queued operation is logged with its op id"
    );
    let decoded_password = "sysadmin-Secr3t!";
    for secret in [
        stack.admin_token.as_str(),
        forged.as_str(),
        reader.as_str(),
        password,
        decoded_password,
        "Hunter2-registry",
        "Hunter3-become",
        "Hunter4-admin",
        SECRET,
    ] {
        assert!(!text.contains(secret), "a secret reached the log: {secret}");
    }
    assert_eq!(
        dcbackup_tests::jwts_in(&text),
        Vec::<&str>::new(),
        "no token of any kind"
    );
}
