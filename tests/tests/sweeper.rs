//! The sweeper: a worker killed mid-backup leaves an expiring lease that the sweeper turns
//! into a failed operation, a free slot and no orphaned archive; a dead-lettered job ends its
//! operation as failed only if its lease expired or no worker ever started it; live leases
//! and healthy operations are never touched. Time is advanced through `sweep_at`.

use dcbackup::api::Route;
use dcbackup::config::Config;
use dcbackup::runtime;
use dcbackup::sweeper::SweepReport;
use dcbackup_protocol::JobState;
use dcbackup_tests::lab::Lab;
use dcbackup_tests::standin::{Hold, StandIn};
use http::StatusCode;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sweeper(lab: &Lab) -> dcbackup::sweeper::Sweeper {
    let config = dcbackup::config::Config::new(lab.stack.resources.clone());
    runtime::sweeper(&lab.stack.clients, &config)
}

/// The subcloud's lease expiry (Unix seconds).
async fn lease(lab: &Lab, id: u64) -> u64 {
    lab.stack.item(id).await["lease_expires_at"]
        .as_n()
        .expect("a held lease")
        .parse()
        .unwrap()
}

async fn archive_exists(lab: &Lab, key: &str) -> bool {
    lab.stack
        .clients
        .s3
        .head_object()
        .bucket(&lab.stack.resources.backup_bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

async fn dead_letter(lab: &Lab, body: &str) {
    let sqs = &lab.stack.clients.sqs;
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
        .message_body(body)
        .send()
        .await
        .unwrap();
}

/// The worker, in its own process, is killed while it waits on the agent for the start of
/// the backup; the agent then starts it anyway and uploads the archive's parts, which no
/// worker completes. The sweeper leaves the live lease alone, and once the lease expired (the
/// sweep's time is advanced, not waited for) fails the operation, frees the slot and aborts
/// the orphaned upload.
#[tokio::test]
async fn a_worker_killed_inside_the_agent_call_is_recovered_by_the_sweeper() {
    let lab = Lab::new().await;
    let agent = lab.agent("kill1").await;
    let mut standin = StandIn::new(&agent.url, Hold::Starts).await;
    let id = lab.register("kill1", &standin.url).await;
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
    let spec = json!({"prefix": lab.stack.prefix, "lease_seconds": Config::DEFAULT_LEASE_SECONDS});
    worker
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();

    // The worker is inside the agent call: its start request is held, unanswered.
    let start = tokio::time::timeout(Duration::from_secs(60), standin.held())
        .await
        .expect("the worker never called the agent");
    assert_eq!(
        lab.stack.item(id).await["backup_status"].as_s().unwrap(),
        "pre-backup"
    );
    worker.kill().expect("SIGKILL");
    worker.wait().unwrap();

    // The request reaches the agent after all: it backs up and uploads the archive's parts.
    let answer = String::from_utf8(standin.forward(&start).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 20"), "{answer}");
    let op_id = lab.stack.operations().await[0]["op_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = format!("kill1/24.09/{op_id}.tar.gz");
    let agent_url = dcbackup::domain::AgentUrl::parse("agent-url", &agent.url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = lab.worker.agents.job(&agent_url, "kill1", &op_id).await;
        if view.unwrap().expect("the agent's job").state == JobState::Succeeded {
            break;
        }
        assert!(Instant::now() < deadline, "the agent never uploaded {key}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let upload_id = lab.upload_id(&op_id).await;

    let sweeper = sweeper(&lab);
    let expiry = lease(&lab, id).await;
    assert_eq!(
        sweeper.sweep_at(expiry - 1).await.unwrap(),
        SweepReport::default(),
        "the lease is still live"
    );
    assert_eq!(sweeper.sweep_at(expiry).await.unwrap().recovered, 1);
    let shown = lab
        .stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/kill1", None)
        .await;
    assert_eq!(
        shown.body["backup-status"], "backup-prep-failed",
        "{}",
        shown.body
    );
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
    assert!(!archive_exists(&lab, &key).await, "no orphaned archive");
    assert!(
        !lab.upload_existed(&key, &upload_id).await,
        "the orphaned upload was aborted"
    );
    assert!(
        !lab.stack.item(id).await.contains_key("orphan_upload"),
        "and forgotten"
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

/// A copy of the job of an operation that runs well lands on the dead-letter queue: the
/// operation goes on untouched, the copy stays on the queue for a later sweep; once the
/// lease has expired, a dead-lettered job fails the operation, saying so.
#[tokio::test]
async fn a_dead_lettered_copy_fails_only_an_operation_whose_lease_expired() {
    let lab = Lab::new().await;
    let agent = lab.agent("dlq2").await;
    let id = lab.register("dlq2", &agent.url).await;
    let reply = lab
        .stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"subcloud": "dlq2"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(lab.pump_once().await, 1);
    let running = lab.stack.item(id).await;
    assert_eq!(running["backup_status"].as_s().unwrap(), "backing-up");
    let job = lab.delivered.lock().unwrap()[0].clone();
    dead_letter(&lab, &job).await;

    let sweeper = sweeper(&lab);
    let expiry = lease(&lab, id).await;
    let report = sweeper.sweep_at(expiry - 1).await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            kept: 1,
            ..SweepReport::default()
        }
    );
    assert_eq!(lab.stack.item(id).await, running, "the operation untouched");
    assert_eq!(lab.stack.operations().await[0]["state"], "running");
    let dlq = &lab.stack.resources.jobs_dead_letter_queue;
    assert_eq!(lab.stack.queued(dlq).await, 1, "the copy kept as evidence");

    // The same copy again (the kept one is in flight), judged after the lease expired.
    dead_letter(&lab, &job).await;
    let report = sweeper.sweep_at(expiry).await.unwrap();
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    assert_eq!(report.recovered, 0, "ended by the dead letter");
    let shown = lab
        .stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/dlq2", None)
        .await;
    assert_eq!(shown.body["backup-status"], "failed", "{}", shown.body);
    let why = shown.body["error-description"].as_str().unwrap();
    assert!(
        why.contains("its job was dead-lettered and its lease expired at"),
        "{why}"
    );
    assert_eq!(lab.stack.operations().await[0]["state"], "failed");
}

/// A job dead-lettered before any worker ran it (the worker was throttled): the operation is
/// failed at once, live lease or not, and says its job never started.
#[tokio::test]
async fn a_job_dead_lettered_before_any_worker_ran_fails_its_operation() {
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

/// As above, but the slot is recovered by the next create's claim, not by the sweeper: that
/// claim marks the dead create's upload as orphaned, and the next worker on the subcloud
/// aborts it before it does anything else.
#[tokio::test]
async fn an_upload_left_by_a_create_the_next_claim_recovered_is_aborted() {
    let lab = Lab::new().await;
    let agent = lab.agent("kill2").await;
    let mut standin = StandIn::new(&agent.url, Hold::Starts).await;
    let id = lab.register("kill2", &standin.url).await;
    let create = json!({"subcloud": "kill2"});
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
    // A short lease, so the next request finds it expired.
    let spec = json!({"prefix": lab.stack.prefix, "lease_seconds": 2});
    worker
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let start = tokio::time::timeout(Duration::from_secs(60), standin.held())
        .await
        .expect("the worker never called the agent");
    worker.kill().expect("SIGKILL");
    worker.wait().unwrap();
    let answer = String::from_utf8(standin.forward(&start).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 20"), "{answer}");
    let op_id = lab.stack.operations().await[0]["op_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = format!("kill2/24.09/{op_id}.tar.gz");
    let upload_id = lab.upload_id(&op_id).await;
    let agent_url = dcbackup::domain::AgentUrl::parse("agent-url", &agent.url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = lab.worker.agents.job(&agent_url, "kill2", &op_id).await;
        if view.unwrap().expect("the agent's job").state == JobState::Succeeded {
            break;
        }
        assert!(Instant::now() < deadline, "the agent never uploaded {key}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expiry = lease(&lab, id).await;
    while dcbackup::domain::epoch_now() <= expiry {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let again = lab
        .stack
        .call(Route::BackupCreate, "/v1.0/subcloud-backup", Some(create))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(
        lab.stack.item(id).await["orphan_upload"].as_s().unwrap(),
        &op_id,
        "the claim marked the dead create's upload"
    );
    assert_eq!(lab.pump_once().await, 1);
    assert!(
        !lab.upload_existed(&key, &upload_id).await,
        "the next worker aborted the orphaned upload"
    );
    assert!(!lab.stack.item(id).await.contains_key("orphan_upload"));
    assert!(!archive_exists(&lab, &key).await);
}
