//! The sweeper: a worker killed mid-backup leaves an expiring lease that the sweeper turns
//! into a failed operation and a free slot; a dead-lettered job ends its operation as
//! failed; live leases are never touched.

use dcbackup::api::Route;
use dcbackup::runtime;
use dcbackup_tests::lab::Lab;
use http::StatusCode;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LEASE_SECONDS: u64 = 3;

fn sweeper(lab: &Lab) -> dcbackup::sweeper::Sweeper {
    let config = dcbackup::config::Config::new(lab.stack.resources.clone());
    runtime::sweeper(&lab.stack.clients, &config)
}

#[tokio::test]
async fn a_worker_killed_mid_backup_is_recovered_by_the_sweeper() {
    let mut lab = Lab::new().await;
    lab.stack.app.lease_seconds = LEASE_SECONDS;
    let agent = lab.agent("kill1").await;
    let id = lab.register("kill1", &agent.url).await;
    let create = json!({"subcloud": "kill1"});
    let reply = lab
        .stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(create.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let mut worker = Command::new(env!("CARGO_BIN_EXE_worker-pump"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the worker process");
    let spec = json!({"prefix": lab.stack.prefix, "lease_seconds": LEASE_SECONDS});
    worker
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();

    // Kill it as soon as the backup is under way on the agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let item = lab.stack.item(id).await;
        if item["backup_status"].as_s().unwrap() == "backing-up" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never started the backup: {item:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.kill().expect("SIGKILL");
    worker.wait().unwrap();

    let sweeper = sweeper(&lab);
    assert_eq!(
        sweeper.sweep().await.unwrap().recovered,
        0,
        "the lease is still live"
    );
    // Within the lease and one sweep interval, the operation is failed and the slot free.
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 1)).await;
    assert_eq!(sweeper.sweep().await.unwrap().recovered, 1);
    let shown = lab
        .stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/kill1", None)
        .await;
    assert_eq!(shown.body["backup-status"], "failed", "{}", shown.body);
    assert!(shown.body["error-description"]
        .as_str()
        .unwrap()
        .contains("lease expired"));
    assert_eq!(shown.body["operation"], serde_json::Value::Null);
    assert_eq!(lab.stack.operations().await[0]["state"], "failed");
    assert!(
        !lab.stack.item(id).await.contains_key("lease_held"),
        "out of the lease index"
    );

    let again = lab
        .stack
        .call(Route::BackupCreate, "/v1.0/subcloud-backup", Some(create))
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a new create succeeds: {:?}",
        again.body
    );
}

#[tokio::test]
async fn a_dead_lettered_job_ends_its_operation_as_failed() {
    let lab = Lab::new().await;
    lab.register("dlq1", "http://127.0.0.1:1").await;
    let reply = lab
        .stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"subcloud": "dlq1"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // The job, as if every delivery had failed: moved to the dead-letter queue.
    let sqs = &lab.stack.clients.sqs;
    let jobs = lab.stack.drain_jobs().await;
    let dlq = sqs
        .get_queue_url()
        .queue_name(&lab.stack.resources.jobs_dead_letter_queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(jobs[0].to_string())
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&dlq)
        .message_body("garbage")
        .send()
        .await
        .unwrap();

    let report = sweeper(&lab).sweep().await.unwrap();
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(
        report.recovered, 0,
        "its lease had not expired: only the dead letter ended it"
    );
    let shown = lab
        .stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/dlq1", None)
        .await;
    assert_eq!(shown.body["backup-status"], "validate-failed");
    assert!(shown.body["error-description"]
        .as_str()
        .unwrap()
        .contains("dead-lettered before any worker started it"));
    assert_eq!(shown.body["operation"], serde_json::Value::Null);
    assert_eq!(lab.stack.operations().await[0]["state"], "failed");
    let left = sqs.receive_message().queue_url(&dlq).send().await.unwrap();
    assert!(
        left.messages.unwrap_or_default().is_empty(),
        "the dead letters were consumed"
    );
}

#[tokio::test]
async fn the_sample_schedule_event_runs_a_sweep() {
    let lab = Lab::new().await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/sweeper.json");
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("a JSON event");
    assert_eq!(event["detail-type"], "Scheduled Event");
    // The sweeper takes any event; on an idle stack it finds nothing to do.
    let report = sweeper(&lab).sweep().await.unwrap();
    assert_eq!(
        serde_json::to_value(report).unwrap(),
        json!({"recovered": 0, "dead_lettered": 0, "kept": 0})
    );
}
