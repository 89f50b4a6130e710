//! What the worker and the agents log while a backup runs end to end: the password, the
//! agents' key, worker tokens and pre-signed URL signatures never appear. (A test binary
//! of its own: log capture is per thread, and callsite interest is shared by the tests of
//! one binary.)

use dcbackup::api::Route;
use dcbackup_tests::lab::{Lab, AGENT_SECRET};
use http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_backup_end_to_end_logs_no_secret() {
    let (logs, _guard) = dcbackup_tests::capture_logs();
    let lab = Lab::new().await;
    let agent = lab.agent("log1").await;
    lab.register("log1", &agent.url).await;
    let password = "bG9nZ2VkLXBhc3N3b3Jk"; // base64 of a password
    let body = json!({"subcloud": "log1", "sysadmin_password": password});
    let reply = lab
        .stack
        .call(Route::BackupCreate, "/v1.0/subcloud-backup", Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let done = lab.run_to_end("log1").await;
    assert_eq!(done["backup-status"], "complete-central", "{done}");

    let text = logs.text();
    assert!(
        text.contains("operation finished"),
        "the worker's log was captured"
    );
    for secret in [
        password,
        "logged-password",
        AGENT_SECRET,
        "X-Amz-Signature",
        "Bearer ey",
    ] {
        assert!(!text.contains(secret), "{secret} reached the log");
    }
}
