//! What the functions log: one JSON object a line, with the operation id where there is one,
//! and never a token, a password or a secret, whatever the request carried.

use dcbackup::api::Route;
use dcbackup_tests::{token, Stack, SECRET};
use serde_json::{json, Value};

#[tokio::test]
async fn logs_are_json_with_op_ids_and_carry_no_secret() {
    let (captured, _guard) = dcbackup_tests::capture_logs();

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
        SECRET,
    ] {
        assert!(!text.contains(secret), "a secret reached the log: {secret}");
    }
}
