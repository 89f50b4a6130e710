//! End to end: the API claims and queues, the worker drives real agents, central backups go
//! through the S3 emulator by pre-signed URLs. Each operation must reach its final state
//! with its slot free, and what it did must be true on disk and in storage.

use dcbackup::api::Route;
use dcbackup::domain::OpId;
use dcbackup::jobs::JobMessage;
use dcbackup::store::BackupLocation;
use dcbackup_tests::lab::{tree, Lab, AGENT_SECRET};
use dcbackup_tests::standin::{Hold, StandIn};
use http::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn create(lab: &Lab, body: Value) -> Value {
    let reply = lab
        .stack
        .call(Route::BackupCreate, "/v1.0/subcloud-backup", Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

async fn restore(lab: &Lab, body: Value) {
    let reply = lab
        .stack
        .call(
            Route::BackupRestore,
            "/v1.0/subcloud-backup/restore",
            Some(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

async fn delete(lab: &Lab, body: Value) {
    let reply = lab
        .stack
        .call(
            Route::BackupDelete,
            "/v1.0/subcloud-backup/delete/24.09",
            Some(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
}

async fn unmanage(lab: &Lab, name: &str) {
    let reply = lab
        .stack
        .call(
            Route::SubcloudsUpdate,
            &format!("/v1.0/subclouds/{name}"),
            Some(json!({"management-state": "unmanaged"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

async fn central_objects(lab: &Lab, prefix: &str) -> Vec<String> {
    let listed = lab
        .stack
        .clients
        .s3
        .list_objects_v2()
        .bucket(&lab.stack.resources.backup_bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("listing the bucket");
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// The sizes of the regular files under `dir`: what a backup of it archives.
fn data_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("a data dir")
        .map(|entry| {
            let entry = entry.expect("a dir entry");
            let kind = entry.file_type().expect("its type");
            if kind.is_dir() {
                data_size(&entry.path())
            } else if kind.is_file() {
                entry.metadata().expect("its metadata").len()
            } else {
                0
            }
        })
        .sum()
}

/// Changes the data dir: one file edited, one removed, one added.
fn disturb(dir: &std::path::Path) {
    std::fs::write(dir.join("platform.conf"), "changed\n").unwrap();
    std::fs::remove_file(dir.join("empty")).unwrap();
    std::fs::write(dir.join("new-file"), "new\n").unwrap();
}

#[tokio::test]
async fn central_backup_then_restore_round_trip_is_byte_identical() {
    let lab = Lab::new().await;
    let agent = lab.agent("rt1").await;
    let id = lab.register("rt1", &agent.url).await;
    let original = tree(&agent.data);
    let password = "cm91bmQtdHJpcC1wYXNzd29yZA=="; // base64 of a password
    create(
        &lab,
        json!({"subcloud": "rt1", "sysadmin_password": password}),
    )
    .await;

    let done = lab.run_to_end("rt1").await;
    assert_eq!(done["backup-status"], "complete-central", "{done}");
    assert!(done["backup-datetime"].is_string());
    assert_eq!(done["error-description"], "No errors present");
    let objects = central_objects(&lab, "rt1/24.09/").await;
    assert_eq!(objects.len(), 1, "one archive in the bucket: {objects:?}");
    let backups = lab.stack.app.inventory.backups(id).await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].location, BackupLocation::Central);
    assert_eq!(backups[0].s3_key.as_deref(), Some(objects[0].as_str()));
    let ops = lab.stack.operations().await;
    assert_eq!(ops[0]["state"], "succeeded");
    // Its progress in bytes: all the data archived, the whole archive uploaded.
    let op_id = ops[0]["op_id"].as_str().expect("op_id");
    let shown = lab
        .stack
        .call(
            Route::OperationsShow,
            &format!("/v1.0/subcloud-backup/operations/{op_id}"),
            None,
        )
        .await;
    let bytes = &shown.body["bytes"];
    let data: u64 = data_size(&agent.data);
    assert_eq!(bytes["total"].as_u64(), Some(data), "{}", shown.body);
    assert_eq!(bytes["archived"], bytes["total"], "{}", shown.body);
    assert_eq!(
        bytes["archive"].as_u64(),
        Some(backups[0].size),
        "{}",
        shown.body
    );
    assert_eq!(bytes["uploaded"], bytes["archive"], "{}", shown.body);
    let listed = lab
        .stack
        .call(Route::BackupsList, "/v1.0/subclouds/rt1/backups", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let listed = &listed.body["backups"][0];
    assert_eq!(listed["release"], "24.09");
    assert_eq!(listed["location"], "central");
    assert_eq!(listed["sha256"].as_str().unwrap(), backups[0].sha256);
    assert!(listed["size"].as_u64().unwrap() > 0);

    disturb(&agent.data);
    assert_ne!(tree(&agent.data), original);
    unmanage(&lab, "rt1").await;
    restore(&lab, json!({"subcloud": "rt1"})).await;
    let done = lab.run_to_end("rt1").await;
    assert_eq!(done["deploy-status"], "complete", "{done}");
    assert_eq!(
        tree(&agent.data),
        original,
        "the restore brought back every byte"
    );

    // Nothing secret anywhere the system keeps or sends things.
    let kept = format!(
        "{:?} {:?} {:?} {:?}",
        lab.stack.item(id).await,
        lab.stack.operations().await,
        lab.stack.app.inventory.backups(id).await.unwrap(),
        lab.delivered.lock().unwrap()
    );
    for secret in [
        password,
        AGENT_SECRET,
        "X-Amz-Signature",
        lab.stack.admin_token.as_str(),
    ] {
        assert!(!kept.contains(secret), "{secret} was kept or queued");
    }
}

#[tokio::test]
async fn local_backup_restore_and_delete() {
    let lab = Lab::new().await;
    let agent = lab.agent("loc1").await;
    let id = lab.register("loc1", &agent.url).await;
    let original = tree(&agent.data);
    create(&lab, json!({"subcloud": "loc1", "local_only": true})).await;
    let done = lab.run_to_end("loc1").await;
    assert_eq!(done["backup-status"], "complete-local", "{done}");
    assert!(
        central_objects(&lab, "loc1/").await.is_empty(),
        "nothing went to the bucket"
    );
    let kept = std::fs::read_dir(agent.store.join("backups/24.09"))
        .unwrap()
        .count();
    assert!(kept >= 1, "the archive stays on the subcloud");

    disturb(&agent.data);
    unmanage(&lab, "loc1").await;
    restore(&lab, json!({"subcloud": "loc1", "local_only": true})).await;
    let done = lab.run_to_end("loc1").await;
    assert_eq!(done["deploy-status"], "complete", "{done}");
    assert_eq!(tree(&agent.data), original);

    // A local delete needs the subcloud managed and online again.
    let back = json!({"management-state": "managed"});
    lab.stack
        .call(Route::SubcloudsUpdate, "/v1.0/subclouds/loc1", Some(back))
        .await;
    delete(&lab, json!({"subcloud": "loc1", "local_only": true})).await;
    let done = lab.run_to_end("loc1").await;
    assert_eq!(done["backup-status"], Value::Null, "no backup left: {done}");
    let left = std::fs::read_dir(agent.store.join("backups"))
        .map(|d| {
            d.flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "the agent deleted its local backups");
    assert!(lab
        .stack
        .app
        .inventory
        .backups(id)
        .await
        .unwrap()
        .is_empty());
    assert!(!lab.stack.item(id).await.contains_key("local_backups"));
}

/// The restore's `bootstrap_address` for the subcloud is where its agent is reached, on the
/// registered port: the registered address (127.0.0.2, where nothing listens) is not used.
#[tokio::test]
async fn a_restore_reaches_the_agent_at_its_bootstrap_address() {
    let lab = Lab::new().await;
    let agent = lab.agent("boot1").await;
    lab.register("boot1", &agent.url).await;
    let original = tree(&agent.data);
    create(&lab, json!({"subcloud": "boot1", "local_only": true})).await;
    let done = lab.run_to_end("boot1").await;
    assert_eq!(done["backup-status"], "complete-local", "{done}");

    disturb(&agent.data);
    let elsewhere = agent.url.replace("127.0.0.1", "127.0.0.2");
    let moved = json!({"management-state": "unmanaged", "agent-url": elsewhere});
    let reply = lab
        .stack
        .call(Route::SubcloudsUpdate, "/v1.0/subclouds/boot1", Some(moved))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let values = json!({"bootstrap_address": {"boot1": "127.0.0.1"}});
    restore(
        &lab,
        json!({"subcloud": "boot1", "local_only": true, "restore_values": values}),
    )
    .await;
    let done = lab.run_to_end("boot1").await;
    assert_eq!(done["deploy-status"], "complete", "{done}");
    assert_eq!(tree(&agent.data), original);
}

#[tokio::test]
async fn central_delete_removes_the_objects() {
    let lab = Lab::new().await;
    let agent = lab.agent("del1").await;
    let id = lab.register("del1", &agent.url).await;
    create(&lab, json!({"subcloud": "del1"})).await;
    lab.run_to_end("del1").await;
    assert_eq!(central_objects(&lab, "del1/24.09/").await.len(), 1);
    delete(&lab, json!({"subcloud": "del1"})).await;
    let done = lab.run_to_end("del1").await;
    assert_eq!(done["backup-status"], Value::Null, "{done}");
    assert!(central_objects(&lab, "del1/").await.is_empty());
    assert!(lab
        .stack
        .app
        .inventory
        .backups(id)
        .await
        .unwrap()
        .is_empty());
    let restore = lab
        .stack
        .call(
            Route::BackupRestore,
            "/v1.0/subcloud-backup/restore",
            Some(json!({"subcloud": "del1"})),
        )
        .await;
    assert_eq!(
        restore.status,
        StatusCode::BAD_REQUEST,
        "nothing left to restore"
    );
}

#[tokio::test]
async fn duplicate_and_stale_jobs_change_nothing() {
    let lab = Lab::new().await;
    let agent = lab.agent("dup1").await;
    let id = lab.register("dup1", &agent.url).await;
    create(&lab, json!({"subcloud": "dup1"})).await;
    lab.run_to_end("dup1").await;
    let first: JobMessage = serde_json::from_str(&lab.delivered.lock().unwrap()[0]).unwrap();
    let after = lab.stack.item(id).await;

    // The first job delivered again, after its operation ended: dropped.
    lab.worker.handle(&first).await.unwrap();
    assert_eq!(
        lab.stack.item(id).await,
        after,
        "a duplicate changed nothing"
    );

    // A new operation holds the slot; a job with the old operation's fence is stale.
    create(&lab, json!({"subcloud": "dup1"})).await;
    let holding = lab.stack.item(id).await;
    let stale = JobMessage {
        op_id: OpId::new(),
        ..first.clone()
    };
    lab.worker.handle(&stale).await.unwrap();
    lab.worker.handle(&first).await.unwrap();
    assert_eq!(
        lab.stack.item(id).await,
        holding,
        "stale jobs wrote nothing"
    );
    let done = lab.run_to_end("dup1").await;
    assert_eq!(done["backup-status"], "complete-central");
}

/// The jobs queue's messages, each with its receipt, once `count` are visible (delayed polls
/// become visible after their delay); not deleted.
async fn take(lab: &Lab, count: usize) -> Vec<(String, JobMessage)> {
    let sqs = &lab.stack.clients.sqs;
    let url = lab.worker.jobs.url().await.unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut taken = Vec::new();
    while taken.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} jobs came",
            taken.len()
        );
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            let job = serde_json::from_str(m.body().unwrap()).unwrap();
            taken.push((m.receipt_handle.unwrap(), job));
        }
    }
    taken
}

async fn acknowledge(lab: &Lab, receipt: &str) {
    let url = lab.worker.jobs.url().await.unwrap().to_owned();
    lab.stack
        .clients
        .sqs
        .delete_message()
        .queue_url(url)
        .receipt_handle(receipt)
        .send()
        .await
        .unwrap();
}

/// Duplicate deliveries while the backup runs (SPEC §4: harmless): the API's job delivered
/// again, and the live poll delivered twice, one after the other and then at once. The queue
/// holds one poll chain all along — one message that carries the operation on — not two.
#[tokio::test]
async fn a_job_delivered_again_during_backing_up_leaves_one_poll_chain() {
    let lab = Lab::new().await;
    let agent = lab.agent("twice1").await;
    let standin = StandIn::new(&agent.url, Hold::Nothing).await;
    let id = lab.register("twice1", &standin.url).await;
    create(&lab, json!({"subcloud": "twice1"})).await;
    assert_eq!(lab.pump_once().await, 1, "the API's job");
    assert_eq!(
        lab.stack.item(id).await["backup_status"].as_s().unwrap(),
        "backing-up"
    );
    // The agent's answers stop: every poll of the chain sends the next one.
    standin.go_dark();
    let jobs = &lab.stack.resources.jobs_queue;
    assert_eq!(lab.stack.queued(jobs).await, 1, "the first poll");

    let first: JobMessage = serde_json::from_str(&lab.delivered.lock().unwrap()[0]).unwrap();
    lab.worker.handle(&first).await.unwrap();
    lab.worker.handle(&first).await.unwrap();
    assert_eq!(
        lab.stack.queued(jobs).await,
        1,
        "the API's job again started no chain"
    );

    let (receipt, poll) = take(&lab, 1).await.remove(0);
    assert_eq!(poll.attempt, 1);
    lab.worker.handle(&poll).await.unwrap();
    lab.worker.handle(&poll).await.unwrap();
    acknowledge(&lab, &receipt).await;
    assert_eq!(lab.stack.queued(jobs).await, 1, "one next poll, not two");

    // Two deliveries at once: both may send a poll, only one hands the chain on; the other's
    // poll is dropped when it arrives and sends nothing.
    let (receipt, poll) = take(&lab, 1).await.remove(0);
    assert_eq!(poll.attempt, 2);
    let (a, b) = tokio::join!(lab.worker.handle(&poll), lab.worker.handle(&poll));
    a.unwrap();
    b.unwrap();
    acknowledge(&lab, &receipt).await;
    let sent = lab.stack.queued(jobs).await;
    for (receipt, next) in take(&lab, sent).await {
        assert_eq!(next.attempt, 3);
        lab.worker.handle(&next).await.unwrap();
        acknowledge(&lab, &receipt).await;
    }
    assert_eq!(lab.stack.queued(jobs).await, 1, "still one chain");
    let item = lab.stack.item(id).await;
    assert_eq!(item["backup_status"].as_s().unwrap(), "backing-up");
    assert_eq!(item["poll_seq"].as_n().unwrap(), "4");
}

/// A start the agent received but did not answer in time may have started the backup: the
/// worker asks again (the agent answers the same op id with the same job) and the backup
/// completes, once.
#[tokio::test]
async fn a_start_the_agent_does_not_answer_is_asked_again() {
    let mut lab = Lab::new().await;
    let secret = dcbackup_protocol::Secret::new(AGENT_SECRET.as_bytes().to_vec()).unwrap();
    lab.worker.agents = dcbackup::agent_client::AgentClient::new(
        secret,
        &dcbackup::agent_client::AgentTls::default(),
    )
    .expect("agent client")
    .with_timeout(Duration::from_secs(1));
    let agent = lab.agent("slow1").await;
    let standin = StandIn::new(&agent.url, Hold::FirstAnswer).await;
    lab.register("slow1", &standin.url).await;
    create(&lab, json!({"subcloud": "slow1"})).await;
    let done = lab.run_to_end("slow1").await;
    assert_eq!(done["backup-status"], "complete-central", "{done}");
    assert!(
        standin.starts.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the unanswered start was asked again"
    );
    assert_eq!(lab.stack.operations().await[0]["state"], "succeeded");
    assert_eq!(
        central_objects(&lab, "slow1/").await.len(),
        1,
        "one backup, one archive"
    );
}

#[tokio::test]
async fn an_unreachable_agent_fails_the_backup_in_preparation() {
    let lab = Lab::new().await;
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    lab.register("gone1", &format!("http://127.0.0.1:{port}"))
        .await;
    create(&lab, json!({"subcloud": "gone1"})).await;
    let done = lab.run_to_end("gone1").await;
    assert_eq!(done["backup-status"], "backup-prep-failed", "{done}");
    let why = done["error-description"].as_str().unwrap();
    assert!(
        why.contains("unreachable") && why.contains(&port.to_string()),
        "{why}"
    );
    assert_eq!(lab.stack.operations().await[0]["state"], "failed");
    // The slot is free: the next request is judged on its own.
    let again = lab
        .stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"subcloud": "gone1"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn a_corrupted_archive_is_refused_and_the_data_is_untouched() {
    let lab = Lab::new().await;
    let agent = lab.agent("bad1").await;
    lab.register("bad1", &agent.url).await;
    create(&lab, json!({"subcloud": "bad1"})).await;
    lab.run_to_end("bad1").await;
    let key = central_objects(&lab, "bad1/24.09/").await.remove(0);
    let s3 = &lab.stack.clients.s3;
    let bucket = &lab.stack.resources.backup_bucket;
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let mut bytes = object.body.collect().await.unwrap().into_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();

    disturb(&agent.data);
    let before = tree(&agent.data);
    unmanage(&lab, "bad1").await;
    restore(&lab, json!({"subcloud": "bad1"})).await;
    let done = lab.run_to_end("bad1").await;
    assert_eq!(done["deploy-status"], "restore-failed", "{done}");
    assert!(done["error-description"].is_string());
    assert_eq!(tree(&agent.data), before, "nothing was replaced");
}

/// The sample SQS event's two messages beside a live job, in one batch: each message did what
/// it should — the live job moved its operation on, the job for a subcloud that does not exist
/// and the message that is not a job were acknowledged and changed nothing — and a batch the
/// worker cannot handle (its store is missing) reports exactly its messages for retry.
#[tokio::test]
async fn each_message_of_a_batch_does_what_it_should() {
    let lab = Lab::new().await;
    let agent = lab.agent("live1").await;
    let id = lab.register("live1", &agent.url).await;
    assert_ne!(id, 3, "the sample job's subcloud must not exist here");
    create(&lab, json!({"subcloud": "live1"})).await;
    let live_job = lab.stack.drain_jobs().await.remove(0);

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/worker.json");
    let mut event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("an SQS event");
    let mut live = event.records[0].clone();
    live.message_id = Some("live-message".into());
    live.body = Some(live_job.to_string());
    event.records.push(live.clone());

    let response = lab.worker.handle_batch(event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "nothing to retry: {:?}",
        response.batch_item_failures
    );
    let shown = lab
        .stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/live1", None)
        .await;
    assert_ne!(
        shown.body["backup-status"], "validating",
        "the live job was handled: {}",
        shown.body
    );
    let records = lab.stack.operations().await;
    assert_eq!(
        records.len(),
        1,
        "only the live operation exists: {records:?}"
    );
    assert_ne!(records[0]["state"], "queued", "{records:?}");
    let list = lab
        .stack
        .call(Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    assert_eq!(
        list.body["subclouds"].as_array().unwrap().len(),
        1,
        "the sample job created nothing"
    );

    // A worker whose store does not exist cannot handle the live job: only it is retried.
    let broken = dcbackup_tests::Stack::attach("tmissing0000000000").await;
    let worker = dcbackup_tests::lab::lab_worker(&broken, 60);
    let mut unreadable = live.clone();
    unreadable.message_id = Some("not-a-job".into());
    unreadable.body = Some("this is not a job".into());
    let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
    batch.records = vec![live, unreadable];
    let response = worker.handle_batch(batch).await;
    let retried: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(retried, ["live-message"]);
}

#[tokio::test]
async fn a_group_never_runs_more_than_its_max_parallel_subclouds() {
    let lab = Lab::new().await;
    let group = json!({"name": "pair", "max_parallel_subclouds": 2});
    let created = lab
        .stack
        .call(Route::GroupsCreate, "/v1.0/subcloud-groups", Some(group))
        .await;
    let group_id = created.body["id"].as_u64().unwrap();
    let mut agents = Vec::new();
    for i in 0..6 {
        let name = format!("par{i}");
        let agent = lab.agent(&name).await;
        let body = json!({"group_id": "pair", "management-state": "managed", "availability-status": "online", "agent-url": agent.url});
        lab.stack.register(&name, body).await;
        agents.push(agent);
    }
    create(&lab, json!({"group": "pair"})).await;
    for i in 0..6 {
        let done = lab.run_to_end(&format!("par{i}")).await;
        assert_eq!(done["backup-status"], "complete-central", "{done}");
    }

    // From the records: at no instant were more than two running.
    let records = lab.stack.operations().await;
    assert_eq!(records.len(), 6);
    let mut events: Vec<(String, i32)> = Vec::new();
    for r in &records {
        assert_eq!(r["state"], "succeeded");
        events.push((r["started_at"].as_str().unwrap().to_owned(), 1));
        events.push((r["finished_at"].as_str().unwrap().to_owned(), -1));
    }
    // Ends sort before starts at the same instant: a seat is given back before it is taken.
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut running, mut most) = (0, 0);
    for (_, delta) in events {
        running += delta;
        most = most.max(running);
    }
    assert_eq!(most, 2, "the cap was used and never exceeded");
    let group_item = lab
        .stack
        .clients
        .dynamodb
        .get_item()
        .table_name(&lab.stack.resources.groups_table)
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::N(group_id.to_string()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        group_item["running"].as_n().unwrap(),
        "0",
        "every seat was given back"
    );
}

/// `bytes` of data no compressor shrinks (xorshift64), so the archive is as large.
fn incompressible(bytes: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut out = Vec::with_capacity(bytes + 8);
    while out.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(bytes);
    out
}

/// A lab whose worker uploads in S3's smallest parts, signing URLs `ahead` parts ahead.
async fn small_parts_lab(ahead: u32) -> Lab {
    let mut lab = Lab::new().await;
    lab.worker.part_size = dcbackup_protocol::MIN_PART_SIZE;
    lab.worker.part_urls_ahead = ahead;
    lab
}

#[tokio::test]
async fn a_backup_larger_than_the_part_size_goes_up_in_parts_and_restores_byte_identical() {
    // Two URLs ahead: the other parts' URLs are signed at polls, as the upload gets to them.
    let lab = small_parts_lab(2).await;
    let agent = lab.agent("mp1").await;
    std::fs::write(agent.data.join("large.bin"), incompressible(17 << 20)).unwrap();
    let id = lab.register("mp1", &agent.url).await;
    let original = tree(&agent.data);
    create(&lab, json!({"subcloud": "mp1"})).await;

    // While it runs, the subcloud's operation shows its progress in bytes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = None;
    let done = loop {
        lab.pump_once().await;
        let shown = lab
            .stack
            .call(Route::SubcloudsShow, "/v1.0/subclouds/mp1", None)
            .await;
        if shown.body["operation"].is_null() {
            break shown.body;
        }
        if shown.body["operation"]["bytes"]["total"].as_u64() > Some(0) {
            seen = Some(shown.body["operation"]["bytes"].clone());
        }
        assert!(
            Instant::now() < deadline,
            "mp1 did not finish: {}",
            shown.body
        );
    };
    assert_eq!(done["backup-status"], "complete-central", "{done}");
    let seen = seen.expect("the subcloud's operation showed its bytes while it ran");
    assert_eq!(
        seen["total"].as_u64(),
        Some(data_size(&agent.data)),
        "{seen}"
    );

    let objects = central_objects(&lab, "mp1/24.09/").await;
    assert_eq!(objects.len(), 1, "one archive: {objects:?}");
    let head = lab
        .stack
        .clients
        .s3
        .head_object()
        .bucket(&lab.stack.resources.backup_bucket)
        .key(&objects[0])
        .send()
        .await
        .unwrap();
    // A multipart object's ETag ends in its part count.
    let etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    let parts: u32 = etag
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    assert_eq!(parts, 4, "17 MiB in parts of 5 MiB: {etag}");
    let backups = lab.stack.app.inventory.backups(id).await.unwrap();
    assert_eq!(
        head.content_length().and_then(|n| u64::try_from(n).ok()),
        Some(backups[0].size)
    );
    let op_id = lab.stack.operations().await[0]["op_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let upload_id = lab.upload_id(&op_id).await;
    assert!(
        !lab.upload_existed(&objects[0], &upload_id).await,
        "completed, not left incomplete"
    );

    disturb(&agent.data);
    unmanage(&lab, "mp1").await;
    restore(&lab, json!({"subcloud": "mp1"})).await;
    let done = lab.run_to_end("mp1").await;
    assert_eq!(done["deploy-status"], "complete", "{done}");
    assert_eq!(tree(&agent.data), original, "every byte came back");
}

#[tokio::test]
async fn an_upload_that_fails_midway_is_aborted() {
    // One URL ahead: the agent uploads part 1 and waits for the worker's next poll.
    let lab = small_parts_lab(1).await;
    let agent = lab.agent("mp2").await;
    let large = agent.data.join("large.bin");
    std::fs::write(&large, incompressible(40 << 20)).unwrap();
    lab.register("mp2", &agent.url).await;
    let reply = create(&lab, json!({"subcloud": "mp2"})).await;
    let op_id = reply["subclouds"][0]["operation"]["id"]
        .as_str()
        .expect("the operation")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab.stack.operations().await[0]["state"] != "running" {
        lab.pump_once().await;
        assert!(Instant::now() < deadline, "the backup never started");
    }
    // No more polls for now: once part 1 is up the agent waits for part 2's URL, with the
    // large file read part-way.
    let agent_url = dcbackup::domain::AgentUrl::parse("agent-url", &agent.url).unwrap();
    loop {
        let view = lab
            .worker
            .agents
            .job(&agent_url, "mp2", &op_id)
            .await
            .unwrap()
            .expect("the agent's job");
        let upload = view.upload.expect("an upload");
        if upload.waiting_for_url {
            assert_eq!(upload.parts_uploaded, 1, "{upload:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never waited: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The file shrinks under the backup: the archive fails mid-way.
    std::fs::File::create(&large).unwrap();

    let done = lab.run_to_end("mp2").await;
    assert_eq!(done["backup-status"], "failed", "{done}");
    let why = done["error-description"].as_str().unwrap();
    assert!(
        why.contains("changed while it was being backed up"),
        "{why}"
    );
    let key = format!("mp2/24.09/{op_id}.tar.gz");
    let upload_id = lab.upload_id(&op_id).await;
    assert!(
        !lab.upload_existed(&key, &upload_id).await,
        "the worker aborted the incomplete upload"
    );
    assert!(central_objects(&lab, "mp2/").await.is_empty());
}
