//! What the worker and the agents log while operations run end to end — a backup, a restore
//! sent as the stock client sends it (multipart), and a delete, each with a password: the
//! password, secret-looking values, the agents' key, worker tokens (any JWT) and pre-signed
//! URL signatures never appear. (A test binary of its own: the log capture is global, so it
//! sees every thread, the agents' blocking threads included.)

use dcbackup::api::Route;
use dcbackup_tests::lab::{Lab, AGENT_SECRET};
use http::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_end_to_end_log_no_secret() {
    let logs = dcbackup_tests::capture_logs();
    let lab = Lab::new().await;
    let agent = lab.agent("log1").await;
    lab.register("log1", &agent.url).await;
    let password = "bG9nZ2VkLXBhc3N3b3Jk"; // base64 of a password
    let body = json!({"subcloud": "log1", "sysadmin_password": password,
        "backup_values": {"registry_password": "Hunter5-registry"}});
    let reply = lab
        .stack
        .call(Route::BackupCreate, "/v1.0/subcloud-backup", Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let done = lab.run_to_end("log1").await;
    assert_eq!(done["backup-status"], "complete-central", "{done}");

    let unmanage = json!({"management-state": "unmanaged"});
    let reply = lab
        .stack
        .call(
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/log1",
            Some(unmanage),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let multipart = format!(
        "--B0undary\r\nContent-Disposition: form-data; name=\"subcloud\"\r\n\r\nlog1\r\n\
         --B0undary\r\nContent-Disposition: form-data; name=\"sysadmin_password\"\r\n\r\n{password}\r\n\
         --B0undary\r\nContent-Disposition: form-data; name=\"restore_values\"; filename=\"r.yaml\"\r\n\
         Content-Type: application/x-yaml\r\n\r\nbootstrap_address:\n  log1: 127.0.0.1\nadmin_password: Hunter6-admin\n\r\n--B0undary--\r\n"
    );
    let request = http::Request::builder()
        .method(http::Method::PATCH)
        .uri("/v1.0/subcloud-backup/restore")
        .header("content-type", "multipart/form-data; boundary=B0undary")
        .header("x-auth-token", &lab.stack.admin_token)
        .body(lambda_http::Body::Binary(multipart.into_bytes()))
        .unwrap();
    let reply = lab.stack.request(Route::BackupRestore, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let done = lab.run_to_end("log1").await;
    assert_eq!(done["deploy-status"], "complete", "{done}");

    let delete = json!({"subcloud": "log1", "sysadmin_password": password});
    let reply = lab
        .stack
        .call(
            Route::BackupDelete,
            "/v1.0/subcloud-backup/delete/24.09",
            Some(delete),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    let done = lab.run_to_end("log1").await;
    assert_eq!(done["backup-status"], serde_json::Value::Null, "{done}");

    let text = logs.text();
    for expected in ["operation finished", "restore", "delete"] {
        assert!(text.contains(expected), "the log has no {expected:?}");
    }
    for secret in [
        password,
        "logged-password",
        "Hunter5-registry",
        "Hunter6-admin",
        AGENT_SECRET,
        "X-Amz-Signature",
        "X-Amz-Credential",
    ] {
        assert!(!text.contains(secret), "{secret} reached the log");
    }
    assert_eq!(
        dcbackup_tests::jwts_in(&text),
        Vec::<&str>::new(),
        "no token of any kind"
    );
}
