//! The subcloud-backup routes and the operation slot (SPEC §2, §3) against DynamoDB Local
//! and the SQS emulator: the seed's six scenarios, the cross-kind exclusions, lease expiry,
//! fencing, rollback of a job the queue refuses, and every input rule.

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use dcbackup::api::Route;
use dcbackup::config::Config;
use dcbackup::domain::{epoch_now, timestamp_of_epoch, OpId, OpKind, OpState, SlotState};
use dcbackup::jobs::JobQueue;
use dcbackup::resources::Resources;
use dcbackup::store::{Begin, ClaimOutcome, ClaimRequest, Store};
use dcbackup_tests::{token, Stack};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU8, Ordering};

const CREATE: &str = "/v1.0/subcloud-backup";
const RESTORE: &str = "/v1.0/subcloud-backup/restore";

/// A managed, online, deployed subcloud: valid for create.
async fn backup_ready(stack: &Stack, name: &str, group: &str) -> u64 {
    let body = json!({"group_id": group, "management-state": "managed",
        "availability-status": "online", "agent-url": "http://127.0.0.1:18001"});
    stack.register(name, body).await["id"].as_u64().unwrap()
}

/// An unmanaged subcloud with a central backup of its release and an agent: valid for restore.
async fn restore_ready(stack: &Stack, name: &str, group: &str) -> u64 {
    let body = json!({"group_id": group, "agent-url": "http://127.0.0.1:18001"});
    let id = stack.register(name, body).await["id"].as_u64().unwrap();
    stack.add_backup(id, "24.09", false).await;
    id
}

async fn create(stack: &Stack, body: Value) -> dcbackup_tests::Reply {
    stack.call(Route::BackupCreate, CREATE, Some(body)).await
}

async fn restore(stack: &Stack, body: Value) -> dcbackup_tests::Reply {
    stack.call(Route::BackupRestore, RESTORE, Some(body)).await
}

fn names(reply: &Value, key: &str) -> Vec<String> {
    reply[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The operation records of a subcloud, from the table.
async fn records_of(stack: &Stack, subcloud_id: u64) -> Vec<Value> {
    stack
        .operations()
        .await
        .into_iter()
        .filter(|op| op["subcloud_id"] == subcloud_id)
        .collect()
}

// ---- the seed's test plan ------------------------------------------------------------

#[tokio::test]
async fn concurrent_backup_create_cannot_be_triggered_on_one_subcloud() {
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "sc1", "Default").await;
    let attempts = (0..30).map(|_| create(&stack, json!({"subcloud": "sc1"})));
    let replies = futures::future::join_all(attempts).await;
    let accepted: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(accepted.len(), 1, "exactly one create starts");
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
        assert_eq!(
            r.message(),
            "Cannot perform subcloud-backup create operation: Subcloud sc1 current \
             backup_status is 'validating'. Please wait until it finishes before running this \
             operation."
        );
    }
    let sc = &accepted[0].body["subclouds"][0];
    assert_eq!(sc["backup-status"], "validating");
    assert_eq!(sc["operation"]["kind"], "create");
    let records = records_of(&stack, id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["op_id"], sc["operation"]["id"]);
    assert_eq!(stack.drain_jobs().await.len(), 1, "one job on the queue");

    // Asked by id (claimed without a read), the busy subcloud is still named as stored.
    let by_id = create(&stack, json!({"subcloud": id})).await;
    assert_eq!(by_id.status, StatusCode::CONFLICT, "{:?}", by_id.body);
    assert!(by_id.message().contains("Subcloud sc1 current"));
    let listed = &by_id.body["error"]["subclouds"][0];
    assert_eq!(
        (listed["id"].as_u64(), listed["name"].as_str()),
        (Some(id), Some("sc1"))
    );
}

#[tokio::test]
async fn the_api_returns_an_error_when_all_specified_subclouds_have_a_backup_create_in_progress() {
    let stack = Stack::new().await;
    stack.create_group("busy").await;
    for name in ["b1", "b2", "b3"] {
        backup_ready(&stack, name, "busy").await;
        assert_eq!(
            create(&stack, json!({"subcloud": name})).await.status,
            StatusCode::OK
        );
    }
    let reply = create(&stack, json!({"group": "busy"})).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
    assert_eq!(
        reply.message(),
        "Every subcloud in group busy has an operation in progress"
    );
    let reasons = reply.body["error"]["subclouds"].as_array().unwrap();
    assert_eq!(reasons.len(), 3);
    assert!(reasons.iter().all(|r| r["status"] == "busy"));
    assert_eq!(
        stack.operations().await.len(),
        3,
        "no new operation was recorded"
    );
}

#[tokio::test]
async fn with_group_no_concurrent_create_starts_on_a_busy_member_and_free_members_start() {
    let stack = Stack::new().await;
    stack.create_group("mixed").await;
    for name in ["m1", "m2", "m3", "m4"] {
        backup_ready(&stack, name, "mixed").await;
    }
    let first = create(&stack, json!({"subcloud": "m2"})).await;
    let busy_op = first.body["subclouds"][0]["operation"]["id"].clone();
    let reply = create(&stack, json!({"group": "mixed"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // Like dcmanager: every member as it stands, the busy one with the operation it kept.
    assert_eq!(names(&reply.body, "subclouds"), ["m1", "m2", "m3", "m4"]);
    let listed = reply.body["subclouds"].as_array().unwrap();
    assert!(listed.iter().all(|sc| sc["backup-status"] == "validating"));
    assert_eq!(listed[1]["operation"]["id"], busy_op);
    assert_ne!(listed[0]["operation"]["id"], busy_op);
    assert_eq!(names(&reply.body, "skipped"), ["m2"]);
    assert_eq!(reply.body["skipped"][0]["status"], "busy");
    let m2 = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/m2", None)
        .await;
    assert_eq!(
        m2.body["operation"]["id"], busy_op,
        "the busy member kept its operation"
    );
    assert_eq!(stack.operations().await.len(), 4);
    assert_eq!(stack.drain_jobs().await.len(), 4);
}

#[tokio::test]
async fn concurrent_restore_cannot_be_triggered_on_one_subcloud() {
    let stack = Stack::new().await;
    let id = restore_ready(&stack, "r1", "Default").await;
    let attempts = (0..30).map(|_| restore(&stack, json!({"subcloud": "r1"})));
    let replies = futures::future::join_all(attempts).await;
    assert_eq!(
        replies
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count(),
        1
    );
    assert!(replies
        .iter()
        .filter(|r| r.status != StatusCode::OK)
        .all(|r| r.status == StatusCode::CONFLICT
            && r.message().contains("subcloud-backup restore operation")));
    assert_eq!(records_of(&stack, id).await.len(), 1);
    let shown = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/r1", None)
        .await;
    assert_eq!(shown.body["deploy-status"], "pre-restore");
}

#[tokio::test]
async fn the_api_returns_an_error_when_all_specified_subclouds_have_a_restore_in_progress() {
    let stack = Stack::new().await;
    stack.create_group("rgroup").await;
    for name in ["r1", "r2"] {
        restore_ready(&stack, name, "rgroup").await;
        assert_eq!(
            restore(&stack, json!({"subcloud": name})).await.status,
            StatusCode::OK
        );
    }
    let reply = restore(&stack, json!({"group": "rgroup"})).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
    assert_eq!(stack.operations().await.len(), 2);
}

#[tokio::test]
async fn with_group_no_concurrent_restore_starts_on_a_busy_member_and_free_members_start() {
    let stack = Stack::new().await;
    stack.create_group("rmixed").await;
    for name in ["r1", "r2", "r3"] {
        restore_ready(&stack, name, "rmixed").await;
    }
    assert_eq!(
        restore(&stack, json!({"subcloud": "r3"})).await.status,
        StatusCode::OK
    );
    let reply = restore(&stack, json!({"group": "rmixed"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(names(&reply.body, "subclouds"), ["r1", "r2", "r3"]);
    assert_eq!(names(&reply.body, "skipped"), ["r3"]);
    assert_eq!(stack.operations().await.len(), 3);
}

// ---- exclusions across kinds, leases and fencing ---------------------------------------

#[tokio::test]
async fn create_is_refused_while_a_restore_runs_and_the_reverse() {
    let stack = Stack::new().await;
    restore_ready(&stack, "x1", "Default").await;
    assert_eq!(
        restore(&stack, json!({"subcloud": "x1"})).await.status,
        StatusCode::OK
    );
    let refused = create(&stack, json!({"subcloud": "x1"})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(
        refused.message(),
        "Cannot perform subcloud-backup create operation: Subcloud x1 current deploy_status \
         is 'pre-restore'. Please wait until it finishes before running this operation."
    );

    backup_ready(&stack, "x2", "Default").await;
    assert_eq!(
        create(&stack, json!({"subcloud": "x2"})).await.status,
        StatusCode::OK
    );
    // Unmanaging would make x2 valid for a restore, but its backup holds the slot.
    let unmanage = stack
        .call(
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/x2",
            Some(json!({"management-state": "unmanaged"})),
        )
        .await;
    assert_eq!(unmanage.status, StatusCode::CONFLICT, "{:?}", unmanage.body);
    let refused = restore(&stack, json!({"subcloud": "x2"})).await;
    assert!(matches!(
        refused.status,
        StatusCode::CONFLICT | StatusCode::BAD_REQUEST
    ));
    assert_eq!(stack.operations().await.len(), 2);
}

#[tokio::test]
async fn delete_is_refused_while_a_backup_runs() {
    let stack = Stack::new().await;
    backup_ready(&stack, "d1", "Default").await;
    assert_eq!(
        create(&stack, json!({"subcloud": "d1"})).await.status,
        StatusCode::OK
    );
    let reply = stack
        .call(
            Route::BackupDelete,
            "/v1.0/subcloud-backup/delete/24.09",
            Some(json!({"subcloud": "d1"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
    assert!(
        reply.message().starts_with(
            "Cannot perform subcloud-backup delete operation: Subcloud d1 current backup_status \
             is 'validating'."
        ),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn unmanaging_or_deleting_a_subcloud_while_its_backup_runs_is_409() {
    let stack = Stack::new().await;
    backup_ready(&stack, "u1", "Default").await;
    let op = create(&stack, json!({"subcloud": "u1"})).await.body["subclouds"][0]["operation"]
        ["id"]
        .clone();
    stack.create_group("elsewhere").await;
    // What the operation drives, was validated against, reaches the agent by, or is seated in.
    for patch in [
        json!({"management-state": "unmanaged"}),
        json!({"deploy-status": "config-failed"}),
        json!({"backup-status": "failed"}),
        json!({"availability-status": "offline"}),
        json!({"agent-url": "http://127.0.0.1:18009"}),
        json!({"bootstrap-address": "127.0.0.9"}),
        json!({"group_id": "elsewhere"}),
        json!({"description": "mixed with", "group_id": 1}),
    ] {
        let reply = stack
            .call(
                Route::SubcloudsUpdate,
                "/v1.0/subclouds/u1",
                Some(patch.clone()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{patch}");
        assert!(
            reply.message().contains(op.as_str().unwrap()),
            "{}",
            reply.message()
        );
        // Listed under error.subclouds, like every other refusal about a subcloud.
        let listed = &reply.body["error"]["subclouds"];
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{:?}", reply.body);
        assert_eq!(listed[0]["name"], "u1");
        assert_eq!(listed[0]["status"], "busy");
        assert_eq!(listed[0]["reason"], reply.message());
    }
    let description = stack
        .call(
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/u1",
            Some(json!({"description": "still editable"})),
        )
        .await;
    assert_eq!(
        description.status,
        StatusCode::OK,
        "fields no operation depends on stay editable"
    );
    let shown = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/u1", None)
        .await;
    assert_eq!(shown.body["management-state"], "managed");
    assert_eq!(shown.body["availability-status"], "online");
    assert_eq!(shown.body["agent-url"], "http://127.0.0.1:18001");
    assert_eq!(shown.body["group_id"], 1);
    assert_eq!(shown.body["backup-status"], "validating");
}

/// dcmanager's deploy states that forbid a restore (SPEC §1), each refused inside the claim;
/// `deploying` is not one of them.
#[tokio::test]
async fn restore_is_refused_in_every_deploy_state_dcmanager_forbids() {
    let stack = Stack::new().await;
    let forbidden = [
        "creating",
        "pre-install",
        "installing",
        "pre-bootstrap",
        "bootstrapping",
        "pre-config",
        "configuring",
        "pre-rehome",
        "rehoming",
        "onsite-restoring",
        "pre-init-enroll",
        "initiating-enroll",
        "pre-enroll",
        "enrolling",
    ];
    for state in forbidden.iter().chain(&["deploying", "install-failed"]) {
        let id = restore_ready(&stack, state, "Default").await;
        let body = json!({"deploy-status": state});
        let reply = stack
            .call(
                Route::SubcloudsUpdate,
                &format!("/v1.0/subclouds/{id}"),
                Some(body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{state}: {:?}", reply.body);
        let reply = restore(&stack, json!({"subcloud": state})).await;
        if forbidden.contains(state) {
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{state}: {:?}",
                reply.body
            );
            assert!(
                reply.message().contains("valid deploy state"),
                "{state}: {}",
                reply.message()
            );
        } else {
            assert_eq!(reply.status, StatusCode::OK, "{state}: {:?}", reply.body);
        }
    }
}

/// dcmanager's deploy states that forbid deleting a subcloud from the inventory.
#[tokio::test]
async fn deleting_a_subcloud_is_refused_in_every_deploy_state_dcmanager_forbids() {
    let stack = Stack::new().await;
    let forbidden = [
        "pre-deploy",
        "creating",
        "pre-install",
        "installing",
        "pre-bootstrap",
        "bootstrapping",
        "pre-config",
        "configuring",
        "deploying",
        "aborting-install",
        "aborting-bootstrap",
        "aborting-config",
        "onsite-restoring",
        "pre-rehome",
        "rehoming",
        "rehome-pending",
        "reconfiguring-network",
        "pre-init-enroll",
        "initiating-enroll",
        "pre-enroll",
        "enrolling",
    ];
    for state in forbidden {
        stack.register(state, json!({"deploy-status": state})).await;
        let reply = stack
            .call(
                Route::SubcloudsDelete,
                &format!("/v1.0/subclouds/{state}"),
                None,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{state}: {:?}",
            reply.body
        );
        assert!(
            reply
                .message()
                .contains(&format!("deploy-status is '{state}'")),
            "{}",
            reply.message()
        );
    }
    stack
        .register("failed-install", json!({"deploy-status": "install-failed"}))
        .await;
    let reply = stack
        .call(
            Route::SubcloudsDelete,
            "/v1.0/subclouds/failed-install",
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

fn claim_request(id: u64, kind: OpKind, now: u64, lease_seconds: u64) -> ClaimRequest {
    ClaimRequest {
        requested_by: "test".into(),
        ..ClaimRequest::new(id, kind, now, lease_seconds)
    }
}

#[tokio::test]
async fn an_expired_lease_can_be_claimed_again_and_the_stale_claim_can_change_nothing() {
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "e1", "Default").await;
    // A claim made long ago whose lease has run out (its worker died).
    let old = claim_request(id, OpKind::Create, epoch_now() - 3600, 60);
    let ClaimOutcome::Claimed {
        subcloud: stale,
        prior,
    } = stack.claim(&old).await
    else {
        panic!("the first claim succeeds");
    };
    assert_eq!(prior, SlotState::Backup(None));

    let reply = create(&stack, json!({"subcloud": "e1"})).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the expired lease is claimed again: {:?}",
        reply.body
    );
    let fresh_op = reply.body["subclouds"][0]["operation"]["id"].clone();

    // The stale holder's op id and fence no longer match: its write is refused.
    let released = stack
        .app
        .inventory
        .release_claim(&stale, &prior)
        .await
        .unwrap();
    assert!(!released, "a stale claim cannot release the slot");
    let item = stack.item(id).await;
    assert_eq!(item["op_id"].as_s().unwrap(), fresh_op.as_str().unwrap());
    assert_eq!(item["fence"].as_n().unwrap(), "2");
    assert_eq!(item["backup_status"].as_s().unwrap(), "validating");
    // The new claim reset error-description; the stale operation's record says why it ended.
    assert_eq!(
        item["error_description"].as_s().unwrap(),
        "No errors present"
    );
    let stale_op = stale.op_id.as_ref().unwrap().as_str();
    let records = stack.operations().await;
    let record = records.iter().find(|op| op["op_id"] == stale_op).unwrap();
    assert_eq!(record["state"], "failed");
    let why = record["error"].as_str().unwrap();
    assert!(why.contains("lease expired"), "{why}");
    // The whole record: moved out of the claim before the recovery freed the slot.
    let ended = stack.app.inventory.operation(stale.op_id.as_ref().unwrap());
    let ended = ended.await.unwrap().expect("the stale operation's record");
    assert_eq!(ended.kind, OpKind::Create);
    assert_eq!(
        (ended.subcloud_id, ended.requested_by.as_str()),
        (id, "test")
    );
    assert_eq!(ended.state, OpState::Failed);
}

#[tokio::test]
async fn an_expired_operation_leaves_no_in_progress_state_behind() {
    let stack = Stack::new().await;
    let id = restore_ready(&stack, "z1", "Default").await;
    // A create whose worker died long ago left backup-status `validating` and its slot held.
    let ready = json!({"management-state": "managed", "availability-status": "online"});
    stack
        .call(Route::SubcloudsUpdate, "/v1.0/subclouds/z1", Some(ready))
        .await;
    let old = claim_request(id, OpKind::Create, epoch_now() - 3600, 60);
    assert!(matches!(
        stack.claim(&old).await,
        ClaimOutcome::Claimed { .. }
    ));
    // Unmanaging first recovers the expired slot: the dead create falls to validate-failed.
    let unmanage = json!({"management-state": "unmanaged"});
    let unmanaged = stack
        .call(Route::SubcloudsUpdate, "/v1.0/subclouds/z1", Some(unmanage))
        .await;
    assert_eq!(unmanaged.status, StatusCode::OK, "{:?}", unmanaged.body);
    assert_eq!(unmanaged.body["backup-status"], "validate-failed");
    let why = unmanaged.body["error-description"].as_str().unwrap();
    assert!(why.contains("lease expired"), "{why}");
    assert_eq!(unmanaged.body["operation"], Value::Null);

    let reply = restore(&stack, json!({"subcloud": "z1"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let item = stack.item(id).await;
    assert_eq!(item["backup_status"].as_s().unwrap(), "validate-failed");
    assert_eq!(item["deploy_status"].as_s().unwrap(), "pre-restore");
}

/// A create request with an `Idempotency-Key`, as an admin.
fn keyed(stack: &Stack, body: Value, key: &str) -> lambda_http::Request {
    let mut request = dcbackup_tests::json_request(Method::POST, CREATE, Some(body));
    request
        .headers_mut()
        .insert("x-auth-token", stack.admin_token.parse().unwrap());
    request
        .headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    request
}

/// Returns once subcloud `id`'s slot is held (the claim was written).
async fn until_claimed(stack: &Stack, id: u64) {
    for _ in 0..2000 {
        if stack.item(id).await.contains_key("op_id") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("subcloud {id} was never claimed");
}

#[tokio::test]
async fn a_request_killed_after_its_claim_leaves_no_slot_without_its_record() {
    let mut stack = Stack::new().await;
    let id = backup_ready(&stack, "k1", "Default").await;
    // A queue endpoint that takes connections and never answers: the request stops right
    // after its claim, and is killed there (its future dropped, as an instance that dies).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let sqs = aws_sdk_sqs::Client::from_conf(
        stack
            .clients
            .sqs
            .config()
            .to_builder()
            .endpoint_url(&endpoint)
            .build(),
    );
    let url = format!("{endpoint}/000000000000/silent");
    let listener = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let queue = JobQueue::new(sqs, "silent".into(), Some(url));
    let jobs = std::mem::replace(&mut stack.app.jobs, queue);
    let before = epoch_now();
    tokio::select! {
        reply = stack.request(Route::BackupCreate, keyed(&stack, json!({"subcloud": "k1"}), "k-dead")) => {
            panic!("the request cannot end without its queue: {:?}", reply.body)
        }
        () = until_claimed(&stack, id) => {}
    }
    let after = epoch_now();
    listener.abort();
    stack.app.jobs = jobs;

    // The slot is held by an operation whose record exists: same id, same fence, queued.
    let item = stack.item(id).await;
    let records = records_of(&stack, id).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["op_id"], item["op_id"].as_s().unwrap().as_str());
    assert_eq!(
        records[0]["fence"].to_string(),
        item["fence"].as_n().unwrap().as_str()
    );
    assert_eq!(records[0]["state"], "queued");
    assert_eq!(
        records[0]["created_at"],
        item["op_since"].as_s().unwrap().as_str()
    );

    // The key is held for the function's timeout and a margin, not for minutes.
    let hold = stack.app.idempotency_hold_seconds;
    assert_eq!(
        hold,
        Config::DEFAULT_FUNCTION_TIMEOUT_SECONDS + Config::IDEMPOTENCY_MARGIN_SECONDS
    );
    let markers = stack
        .clients
        .dynamodb
        .scan()
        .table_name(&stack.resources.idempotency_table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(markers.len(), 1, "{markers:?}");
    let expires: u64 = markers[0]["expires_at"].as_n().unwrap().parse().unwrap();
    assert!(
        (before + hold..=after + hold).contains(&expires),
        "held until {expires}, requested between {before} and {after}"
    );
    let retry = stack
        .request(
            Route::BackupCreate,
            keyed(&stack, json!({"subcloud": "k1"}), "k-dead"),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CONFLICT, "{:?}", retry.body);
    assert!(
        retry.message().contains("still being processed"),
        "{}",
        retry.message()
    );

    // Another request finds the subcloud busy: the dead claim is only its own key's.
    let other = stack
        .request(
            Route::BackupCreate,
            keyed(&stack, json!({"subcloud": "k1"}), "k-other"),
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT, "{:?}", other.body);
    assert!(
        other.message().contains("Please wait until it finishes"),
        "{}",
        other.message()
    );
    // The hold runs out (its time moved into the past, as the clock would move on): the
    // retry with the same key takes the dead claim over and starts the backup.
    stack
        .clients
        .dynamodb
        .update_item()
        .table_name(&stack.resources.idempotency_table)
        .key("idem_key", markers[0]["idem_key"].clone())
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N((before - 1).to_string()))
        .send()
        .await
        .unwrap();
    let retry = stack
        .request(
            Route::BackupCreate,
            keyed(&stack, json!({"subcloud": "k1"}), "k-dead"),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    let item = stack.item(id).await;
    let live = item["op_id"].as_s().unwrap().clone();
    assert_eq!(item["fence"].as_n().unwrap(), "2");
    let records = records_of(&stack, id).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let dead = records
        .iter()
        .find(|r| r["op_id"] != live.as_str())
        .unwrap();
    assert_eq!(dead["state"], "failed");
    assert!(
        dead["error"].as_str().unwrap().contains("was not queued"),
        "{dead:?}"
    );
    let jobs = stack.drain_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["op_id"], live.as_str());
}

#[tokio::test]
async fn a_dead_requests_key_and_claim_are_taken_over_once_their_time_is_up() {
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "k2", "Default").await;
    let inventory = &stack.app.inventory;
    let hold = Config::new(stack.resources.clone()).idempotency_hold_seconds();
    let t0 = epoch_now();
    assert_eq!(
        inventory
            .begin_idempotent("k2-key", "fp", t0, hold)
            .await
            .unwrap(),
        Begin::New
    );
    // The request claims (with its record and its key), then its instance dies before
    // queueing the job. Its lease is the full default: only the key frees the slot early.
    let dead = ClaimRequest {
        key: Some("k2-key".into()),
        ..claim_request(id, OpKind::Create, t0, Config::DEFAULT_LEASE_SECONDS)
    };
    assert!(matches!(
        stack.claim(&dead).await,
        ClaimOutcome::Claimed { .. }
    ));
    for now in [t0 + 1, t0 + hold] {
        assert_eq!(
            inventory
                .begin_idempotent("k2-key", "fp", now, hold)
                .await
                .unwrap(),
            Begin::InProgress,
            "held at {now}, {} s after it was taken",
            now - t0
        );
    }
    let retry_at = t0 + hold + 1;
    assert_eq!(
        inventory
            .begin_idempotent("k2-key", "fp", retry_at, hold)
            .await
            .unwrap(),
        Begin::New,
        "free {} s after it was taken",
        hold + 1
    );
    // Another request (no key, another key) finds the subcloud busy.
    for key in [None, Some("k2-other".to_owned())] {
        let other = ClaimRequest {
            key,
            ..claim_request(id, OpKind::Create, retry_at, 60)
        };
        assert!(matches!(
            stack.claim(&other).await,
            ClaimOutcome::Busy { .. }
        ));
    }
    let retry = ClaimRequest {
        key: Some("k2-key".into()),
        ..claim_request(id, OpKind::Create, retry_at, 60)
    };
    let ClaimOutcome::Claimed { subcloud, .. } = stack.claim(&retry).await else {
        panic!("the retry claims the slot");
    };
    assert_eq!(subcloud.op_id.as_ref(), Some(&retry.op_id));
    assert_eq!(subcloud.fence, 2);
    let records = records_of(&stack, id).await;
    let state = |op: &OpId| {
        records
            .iter()
            .find(|r| r["op_id"] == op.as_str())
            .map(|r| r["state"].clone())
    };
    assert_eq!(state(&dead.op_id), Some(json!("failed")));
    assert_eq!(state(&retry.op_id), Some(json!("queued")));
}

/// SPEC §3: the claim is one write, and its operation's record is in it. The record is found
/// by its op id on the claimed item until a worker starts the operation, which moves it to
/// the operations table; the claim touches no other table (here: there is none).
#[tokio::test]
async fn a_claim_keeps_its_record_in_its_one_write_until_a_worker_starts_it() {
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "k3", "Default").await;
    let resources = Resources {
        operations_table: format!("{}-no-operations", stack.prefix),
        ..stack.resources.clone()
    };
    let alone = Store::new(stack.clients.dynamodb.clone(), resources);
    let request = ClaimRequest {
        group: Some("edge".into()),
        schedule_id: Some(7),
        ..claim_request(id, OpKind::Create, epoch_now(), 60)
    };
    let ClaimOutcome::Claimed { subcloud, .. } = alone.claim(&request).await.unwrap() else {
        panic!("the claim succeeds without the operations table");
    };
    let apart = stack.recorded_operations().await;
    assert!(apart.is_empty(), "nothing recorded apart: {apart:?}");
    let inventory = &stack.app.inventory;
    let kept = inventory.operation(&request.op_id).await.unwrap();
    let kept = kept.expect("the record is found through its op id");
    assert_eq!(kept.state, OpState::Queued);
    assert_eq!(kept.subcloud_id, id);
    assert_eq!(kept.subcloud_name, "k3");
    assert_eq!(kept.release.as_str(), "24.09");
    assert_eq!(kept.fence, 1);
    assert_eq!(kept.requested_by, "test");
    assert_eq!(kept.group.as_deref(), Some("edge"));
    assert_eq!(kept.schedule_id, Some(7));
    assert_eq!(Some(&kept.created_at), subcloud.op_since.as_ref());
    let history = inventory.operation_history(&subcloud).await.unwrap();
    assert_eq!(history, vec![kept.clone()]);
    // The worker's start moves it; read back from the table, it is the same record.
    inventory.keep_record(&subcloud).await.unwrap();
    let records = stack.recorded_operations().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["op_id"], request.op_id.as_str());
    assert_eq!(
        inventory.operation(&request.op_id).await.unwrap(),
        Some(kept)
    );
    // An id that names no subcloud, or another operation on this one, finds nothing.
    let other = OpId::for_subcloud(id);
    assert_eq!(inventory.operation(&other).await.unwrap(), None);
    assert_eq!(inventory.operation(&OpId::new()).await.unwrap(), None);
}

/// Lets the first claim (the UpdateItem that writes `op_request`) reach DynamoDB, then turns
/// its answer into a 500, as a lost answer would be: the SDK sends the same write again.
#[derive(Debug, Default)]
struct LoseFirstClaimAnswer(AtomicU8);

impl Intercept for LoseFirstClaimAnswer {
    fn name(&self) -> &'static str {
        "LoseFirstClaimAnswer"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let update = request
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with(".UpdateItem"));
        let claim = request
            .body()
            .bytes()
            .is_some_and(|b| String::from_utf8_lossy(b).contains("op_request"));
        if update && claim {
            let _ = self
                .0
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self
            .0
            .compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            *context.response_mut().status_mut() = 500u16.try_into()?;
        }
        Ok(())
    }
}

/// A claim that landed but whose answer was lost is sent again by the SDK; the second try
/// finds the slot held by its own operation, which is the claim's, not a busy subcloud's
/// (SPEC §3: no slot held without its job), and knows the state it replaced.
#[tokio::test]
async fn a_claim_sent_again_after_it_landed_is_the_same_claim() {
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "r1", "Default").await;
    let before = stack.item(id).await;
    let lossy = stack.intercepted(LoseFirstClaimAnswer::default()).await;
    let reply = lossy
        .call(Route::BackupCreate, CREATE, Some(json!({"subcloud": "r1"})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let op = reply.body["subclouds"][0]["operation"]["id"].clone();
    let jobs = stack.drain_jobs().await;
    assert_eq!(jobs.len(), 1, "the held slot has its job: {jobs:?}");
    assert_eq!(jobs[0]["op_id"], op);
    let item = stack.item(id).await;
    let prior = before
        .get("backup_status")
        .map_or("", |b| b.as_s().unwrap());
    assert_eq!(item["op_prior"].as_s().unwrap(), prior);

    // With an Idempotency-Key the second try must not take its own claim for one a dead
    // attempt left behind (and fail its own operation).
    let id = backup_ready(&stack, "r2", "Default").await;
    let lossy = stack.intercepted(LoseFirstClaimAnswer::default()).await;
    let mut request =
        dcbackup_tests::json_request(Method::POST, CREATE, Some(json!({"subcloud": "r2"})));
    let headers = request.headers_mut();
    headers.insert("x-auth-token", stack.admin_token.parse().unwrap());
    headers.insert("idempotency-key", "k-r2".parse().unwrap());
    let reply = lossy.request(Route::BackupCreate, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let item = stack.item(id).await;
    let op_id = OpId::parse("op_id", item["op_id"].as_s().unwrap()).unwrap();
    let op = stack.app.inventory.operation(&op_id).await.unwrap();
    let op = op.expect("the held operation's record");
    assert_eq!((op.state, op.error), (OpState::Queued, None));
    assert_eq!(records_of(&stack, id).await.len(), 1, "no other operation");
}

/// A rolled-back claim whose failed record cannot be written is not released: the claim
/// keeps the record until its lease runs out and its recovery writes it.
#[tokio::test]
async fn a_rollback_that_cannot_write_the_record_leaves_the_claim_to_its_lease() {
    let mut stack = Stack::new().await;
    let id = backup_ready(&stack, "u1", "Default").await;
    stack.app.jobs = JobQueue::new(
        stack.clients.sqs.clone(),
        "missing".into(),
        Some("http://sqs.us-east-1.localhost:1/000000000000/missing".into()),
    );
    let resources = Resources {
        operations_table: format!("{}-no-operations", stack.prefix),
        ..stack.resources.clone()
    };
    stack.app.inventory = Store::new(stack.clients.dynamodb.clone(), resources);
    let reply = create(&stack, json!({"subcloud": "u1"})).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    let item = stack.item(id).await;
    assert!(
        item.contains_key("op_id"),
        "the claim keeps the only record"
    );
    let records = stack.operations().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["state"], "queued");
}

#[tokio::test]
async fn a_job_the_queue_refuses_leaves_the_slot_free() {
    let mut stack = Stack::new().await;
    let id = backup_ready(&stack, "q1", "Default").await;
    stack.add_backup(id, "24.09", false).await;
    // A queue that does not exist: the emulator refuses every send.
    stack.app.jobs = JobQueue::new(
        stack.clients.sqs.clone(),
        "missing".into(),
        Some("http://sqs.us-east-1.localhost:1/000000000000/missing".into()),
    );
    let before = stack.item(id).await;
    let reply = create(&stack, json!({"subcloud": "q1"})).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["error"]["subclouds"][0]["status"], "failed");
    let after = stack.item(id).await;
    assert!(!after.contains_key("op_id"), "the claim was rolled back");
    assert!(
        !after.contains_key("backup_status"),
        "backup-status is as it was"
    );
    assert_eq!(after["management_state"], before["management_state"]);
    let records = records_of(&stack, id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["state"], "failed");
    assert_eq!(
        records[0]["error"],
        "the job could not be queued; try again"
    );
    assert!(
        !reply.body.to_string().contains("missing"),
        "no internal name reaches the caller: {:?}",
        reply.body
    );
}

// ---- answers, records, jobs ------------------------------------------------------------

#[tokio::test]
async fn jobs_and_records_carry_no_secret() {
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "j1", "Default").await;
    let password = "U3VwZXJTZWNyZXQtOTk="; // base64 of a password
    let reply = create(
        &stack,
        json!({
            "subcloud": "j1",
            "sysadmin_password": password,
            "backup_values": {"backup_dir": "/opt/backups", "ansible_become_pass": "hunter2"}
        }),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let op_id = reply.body["subclouds"][0]["operation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let jobs = stack.drain_jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["version"], 2);
    assert_eq!(job["op_id"], op_id.as_str());
    assert_eq!(job["kind"], "create");
    assert_eq!(job["subcloud_id"], id);
    assert_eq!(job["subcloud_name"], "j1");
    assert_eq!(job["release"], "24.09");
    assert_eq!(job["fence"], 1);
    assert_eq!(
        job["options"]["values"],
        json!({"backup_dir": "/opt/backups"})
    );
    let everything = format!(
        "{jobs:?} {:?} {:?}",
        stack.operations().await,
        stack.item(id).await
    );
    for secret in [password, "hunter2", "SuperSecret"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }

    let shown = stack
        .call(
            Route::OperationsShow,
            &format!("/v1.0/subcloud-backup/operations/{op_id}"),
            None,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["id"], op_id.as_str());
    assert_eq!(shown.body["requested-by"], "tester");
    assert_eq!(shown.body["state"], "queued");
    let history = stack
        .call(
            Route::OperationsHistory,
            "/v1.0/subclouds/j1/operations",
            None,
        )
        .await;
    assert_eq!(history.body["operations"][0]["id"], op_id.as_str());
    let unknown = stack
        .call(
            Route::OperationsShow,
            &format!("/v1.0/subcloud-backup/operations/{}", OpId::new()),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let garbage = stack
        .call(
            Route::OperationsShow,
            "/v1.0/subcloud-backup/operations/nope",
            None,
        )
        .await;
    assert_eq!(garbage.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_answers_204_when_every_member_is_taken_and_207_otherwise() {
    let stack = Stack::new().await;
    stack.create_group("del").await;
    for name in ["d1", "d2"] {
        backup_ready(&stack, name, "del").await;
    }
    let path = "/v1.0/subcloud-backup/delete/24.09";
    let all = stack
        .call(Route::BackupDelete, path, Some(json!({"group": "del"})))
        .await;
    assert_eq!(all.status, StatusCode::NO_CONTENT, "{:?}", all.body);
    let jobs = stack.drain_jobs().await;
    assert_eq!(jobs.len(), 2);
    assert!(jobs
        .iter()
        .all(|j| j["kind"] == "delete" && j["release"] == "24.09"));

    backup_ready(&stack, "d3", "del").await;
    let partial = stack
        .call(Route::BackupDelete, path, Some(json!({"group": "del"})))
        .await;
    assert_eq!(
        partial.status,
        StatusCode::MULTI_STATUS,
        "{:?}",
        partial.body
    );
    assert_eq!(names(&partial.body, "subclouds"), ["d1", "d2", "d3"]);
    assert!(partial.body["subclouds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|sc| sc["backup-status"] == "deleting-backup"));
    assert_eq!(names(&partial.body, "skipped"), ["d1", "d2"]);

    // A central delete works on an offline subcloud; a local one needs it online.
    stack.register("off", json!({})).await;
    let central = stack
        .call(Route::BackupDelete, path, Some(json!({"subcloud": "off"})))
        .await;
    assert_eq!(central.status, StatusCode::NO_CONTENT);
    stack.register("off2", json!({})).await;
    let local = stack
        .call(
            Route::BackupDelete,
            path,
            Some(json!({"subcloud": "off2", "local_only": "true"})),
        )
        .await;
    assert_eq!(local.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        local.message(),
        "Subcloud off2 must be online and managed for the subcloud-backup delete operation \
         with --local-only option."
    );
}

#[tokio::test]
async fn invalid_subclouds_get_dcmanager_reasons() {
    let stack = Stack::new().await;
    stack.create_group("g").await;
    stack
        .register(
            "offline",
            json!({"group_id": "g", "management-state": "managed"}),
        )
        .await;
    let reply = create(&stack, json!({"subcloud": "offline"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.message(),
        "Subcloud offline must be deployed, online and managed for the subcloud-backup create operation."
    );
    let group = create(&stack, json!({"group": "g"})).await;
    assert_eq!(group.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        group.message(),
        "None of the subclouds in group g are in a valid state for subcloud-backup create"
    );
    assert_eq!(group.body["error"]["subclouds"][0]["name"], "offline");

    // Restore: managed, or no backup of the release, or nowhere to reach it.
    backup_ready(&stack, "managed", "Default").await;
    let r = restore(&stack, json!({"subcloud": "managed"})).await;
    assert!(r.message().contains("must be unmanaged"), "{}", r.message());
    stack
        .register("nobackup", json!({"agent-url": "http://127.0.0.1:1"}))
        .await;
    let r = restore(&stack, json!({"subcloud": "nobackup"})).await;
    assert_eq!(
        r.message(),
        "Subcloud nobackup: no central backup found for release 24.09."
    );
    let id = stack.register("noaddress", json!({})).await["id"]
        .as_u64()
        .unwrap();
    stack.add_backup(id, "24.09", false).await;
    let r = restore(&stack, json!({"subcloud": "noaddress"})).await;
    assert_eq!(
        r.message(),
        "Unable to obtain the subcloud noaddress bootstrap_address from either restore or \
         install values. Please ensure bootstrap_address is specified in the restore-values.yml \
         and try again."
    );
    let with_address = restore(
        &stack,
        json!({"subcloud": "noaddress", "restore_values": {"bootstrap_address": {"noaddress": "10.0.0.7"}}}),
    )
    .await;
    assert_eq!(
        with_address.status,
        StatusCode::OK,
        "{:?}",
        with_address.body
    );
    let local = restore(&stack, json!({"subcloud": "nobackup", "local_only": true})).await;
    assert_eq!(
        local.message(),
        "Subcloud nobackup: no local backup found for release 24.09."
    );
    let installing = stack
        .register(
            "installing",
            json!({"deploy-status": "installing", "agent-url": "http://127.0.0.1:1"}),
        )
        .await;
    stack
        .add_backup(installing["id"].as_u64().unwrap(), "24.09", false)
        .await;
    let r = restore(&stack, json!({"subcloud": "installing"})).await;
    assert!(
        r.message().contains("valid deploy state"),
        "{}",
        r.message()
    );
    assert_eq!(
        stack.operations().await.len(),
        1,
        "only the valid restore was recorded"
    );
}

#[tokio::test]
async fn every_input_rule_is_a_clear_4xx() {
    let stack = Stack::new().await;
    stack.create_group("empty").await;
    backup_ready(&stack, "ok1", "Default").await;
    let cases: Vec<(Route, Value, StatusCode, &str)> = vec![
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "group": "empty"}),
            StatusCode::BAD_REQUEST,
            "'subcloud' and 'group' parameters should not be given at the same time",
        ),
        (
            Route::BackupCreate,
            json!({}),
            StatusCode::BAD_REQUEST,
            "'subcloud' or 'group' parameter is required",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "local_only": "yes"}),
            StatusCode::BAD_REQUEST,
            "Invalid local_only value, should be boolean",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "registry_images": true}),
            StatusCode::BAD_REQUEST,
            "Option registry_images can not be used without local_only option.",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "Unexpected parameter received: colour",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "restore_values": {}}),
            StatusCode::BAD_REQUEST,
            "Unexpected parameter received: restore_values",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "sysadmin_password": "not base64!"}),
            StatusCode::BAD_REQUEST,
            "Failed to decode subcloud sysadmin_password",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "sysadmin_password": "//79/A=="}),
            StatusCode::BAD_REQUEST,
            "Failed to decode subcloud sysadmin_password",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "backup_values": [1, 2]}),
            StatusCode::BAD_REQUEST,
            "Invalid type for backup_values: Expected dict, got list",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "ok1", "backup_values": "a: [x"}),
            StatusCode::BAD_REQUEST,
            "backup_values is not valid YAML",
        ),
        (
            Route::BackupCreate,
            json!({"subcloud": "nope"}),
            StatusCode::NOT_FOUND,
            "Subcloud not found",
        ),
        (
            Route::BackupCreate,
            json!({"group": "nogroup"}),
            StatusCode::NOT_FOUND,
            "Group not found",
        ),
        (
            Route::BackupCreate,
            json!({"group": "empty"}),
            StatusCode::BAD_REQUEST,
            "No subclouds present in group",
        ),
        (
            Route::BackupRestore,
            json!({"subcloud": "ok1", "with_install": true}),
            StatusCode::BAD_REQUEST,
            "with_install is not supported",
        ),
        (
            Route::BackupRestore,
            json!({"subcloud": "ok1", "factory": "true"}),
            StatusCode::BAD_REQUEST,
            "factory is not supported",
        ),
        (
            Route::BackupRestore,
            json!({"subcloud": "ok1", "restore_values": {"bootstrap_address": "10.0.0.1"}}),
            StatusCode::BAD_REQUEST,
            "The bootstrap_address provided in restore_values is in invalid format.",
        ),
        (
            Route::BackupRestore,
            json!({"subcloud": "ok1", "restore_values": {"bootstrap_address": {"ok1": "10.0.0.999"}}}),
            StatusCode::BAD_REQUEST,
            "Subcloud ok1 must have a valid bootstrap address: 10.0.0.999",
        ),
        (
            Route::BackupRestore,
            json!({"subcloud": "ok1", "with_install": "maybe"}),
            StatusCode::BAD_REQUEST,
            "Invalid with_install value, should be boolean",
        ),
        (
            Route::BackupRestore,
            json!({"subcloud": "ok1", "on_site": true}),
            StatusCode::BAD_REQUEST,
            "on_site is not supported",
        ),
        (
            Route::BackupRestore,
            json!({"subcloud": "ok1", "release": "24.09"}),
            StatusCode::BAD_REQUEST,
            "release is not supported",
        ),
        (
            Route::BackupDelete,
            json!({"subcloud": "ok1", "release": "22.12"}),
            StatusCode::BAD_REQUEST,
            "release 22.12 in the body differs from release 24.09 in the path",
        ),
        (
            Route::BackupDelete,
            json!({"subcloud": "ok1", "registry_images": true}),
            StatusCode::BAD_REQUEST,
            "Unexpected parameter received: registry_images",
        ),
    ];
    for (route, body, status, expected) in cases {
        let path = match route {
            Route::BackupDelete => "/v1.0/subcloud-backup/delete/24.09",
            _ => route.pattern(),
        };
        let reply = stack.call(route, path, Some(body.clone())).await;
        assert_eq!(reply.status, status, "{body}: {:?}", reply.body);
        assert!(
            reply.message().starts_with(expected),
            "{body}: {}",
            reply.message()
        );
    }
    let bad_release = stack
        .call(
            Route::BackupDelete,
            "/v1.0/subcloud-backup/delete/latest",
            Some(json!({"subcloud": "ok1"})),
        )
        .await;
    assert_eq!(bad_release.status, StatusCode::BAD_REQUEST);
    assert!(bad_release.message().contains("release_version"));

    let malformed = stack
        .raw(Route::BackupCreate, Method::POST, CREATE, "{\"subcloud\":")
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let big = format!(
        "{{\"subcloud\":\"ok1\",\"backup_values\":{{\"x\":\"{}\"}}}}",
        "a".repeat(70 * 1024)
    );
    let too_large = stack
        .raw(Route::BackupCreate, Method::POST, CREATE, &big)
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A body that is not multipart is JSON whatever its Content-Type says (dcmanager).
    let mut xml =
        dcbackup_tests::json_request(Method::POST, CREATE, Some(json!({"subcloud": "nope"})));
    xml.headers_mut()
        .insert("content-type", "application/xml".parse().unwrap());
    xml.headers_mut()
        .insert("x-auth-token", stack.admin_token.parse().unwrap());
    let xml = stack.request(Route::BackupCreate, xml).await;
    assert_eq!(xml.status, StatusCode::NOT_FOUND, "{:?}", xml.body);
    assert_eq!(xml.message(), "Subcloud not found");
    assert!(
        stack.operations().await.is_empty(),
        "no bad request claimed anything"
    );
}

#[tokio::test]
async fn multipart_bodies_as_dcmanager_clients_send_them() {
    let stack = Stack::new().await;
    backup_ready(&stack, "mp1", "Default").await;
    let body = "--B0undary\r\nContent-Disposition: form-data; name=\"subcloud\"\r\n\r\nmp1\r\n\
                --B0undary\r\nContent-Disposition: form-data; name=\"local_only\"\r\n\r\nFalse\r\n\
                --B0undary\r\nContent-Disposition: form-data; name=\"backup_values\"; filename=\"v.yaml\"\r\n\
                Content-Type: application/x-yaml\r\n\r\nbackup_dir: /opt/b\nretain: 2\n\r\n--B0undary--\r\n";
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(CREATE)
        .header("content-type", "multipart/form-data; boundary=B0undary")
        .header("x-auth-token", &stack.admin_token)
        .body(lambda_http::Body::Binary(body.as_bytes().to_vec()))
        .unwrap();
    let reply = stack.request(Route::BackupCreate, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let jobs = stack.drain_jobs().await;
    assert_eq!(
        jobs[0]["options"]["values"],
        json!({"backup_dir": "/opt/b", "retain": 2})
    );
    assert_eq!(jobs[0]["options"]["local_only"], false);

    let broken = http::Request::builder()
        .method(Method::POST)
        .uri(CREATE)
        .header("content-type", "multipart/form-data; boundary=B0undary")
        .header("x-auth-token", &stack.admin_token)
        .body(lambda_http::Body::Text("--B0undary\r\nno headers".into()))
        .unwrap();
    let reply = stack.request(Route::BackupCreate, broken).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply
            .message()
            .starts_with("Malformed multipart/form-data body"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_answer_without_claiming_again() {
    let stack = Stack::new().await;
    backup_ready(&stack, "i1", "Default").await;
    let send = |body: Value, key: &'static str| {
        let mut request = dcbackup_tests::json_request(Method::POST, CREATE, Some(body));
        request
            .headers_mut()
            .insert("x-auth-token", stack.admin_token.parse().unwrap());
        request
            .headers_mut()
            .insert("idempotency-key", key.parse().unwrap());
        stack.request(Route::BackupCreate, request)
    };
    let first = send(json!({"subcloud": "i1"}), "k-1").await;
    assert_eq!(first.status, StatusCode::OK);
    let again = send(json!({"subcloud": "i1"}), "k-1").await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a retry is not a conflict: {:?}",
        again.body
    );
    assert_eq!(again.body, first.body, "the first answer, word for word");
    assert_eq!(stack.operations().await.len(), 1, "claimed once");
    assert_eq!(stack.drain_jobs().await.len(), 1, "queued once");

    let other = send(json!({"subcloud": "i1", "local_only": true}), "k-1").await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    let new_key = send(json!({"subcloud": "i1"}), "k-2").await;
    assert_eq!(
        new_key.status,
        StatusCode::CONFLICT,
        "a new key is a new request: the slot is busy"
    );
}

#[tokio::test]
async fn operators_may_create_and_delete_but_not_restore() {
    let stack = Stack::new().await;
    backup_ready(&stack, "p1", "Default").await;
    restore_ready(&stack, "p2", "Default").await;
    let operator = token(&["operator"], "admin");
    let reader = token(&["reader"], "admin");
    let restored = stack
        .call_as(
            &operator,
            Route::BackupRestore,
            RESTORE,
            Some(json!({"subcloud": "p2"})),
        )
        .await;
    assert_eq!(restored.status, StatusCode::FORBIDDEN);
    assert!(restored
        .message()
        .contains("dc_api:subcloud_backup:restore"));
    let created = stack
        .call_as(
            &operator,
            Route::BackupCreate,
            CREATE,
            Some(json!({"subcloud": "p1"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    for (route, path) in [
        (Route::BackupCreate, CREATE),
        (Route::BackupRestore, RESTORE),
        (Route::BackupDelete, "/v1.0/subcloud-backup/delete/24.09"),
    ] {
        let reply = stack
            .call_as(&reader, route, path, Some(json!({"subcloud": "p1"})))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    let admin = stack
        .call(
            Route::BackupRestore,
            RESTORE,
            Some(json!({"subcloud": "p2"})),
        )
        .await;
    assert_eq!(admin.status, StatusCode::OK);
}

/// `{"a": {"a": … 1}}` with `levels` mappings, the outermost included.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }))
}

fn multipart_create(
    stack: &Stack,
    subcloud: &str,
    values_yaml: &str,
) -> http::Request<lambda_http::Body> {
    let body = format!(
        "--B0undary\r\nContent-Disposition: form-data; name=\"subcloud\"\r\n\r\n{subcloud}\r\n\
         --B0undary\r\nContent-Disposition: form-data; name=\"backup_values\"; filename=\"v.yaml\"\r\n\
         Content-Type: application/x-yaml\r\n\r\n{values_yaml}\r\n--B0undary--\r\n"
    );
    http::Request::builder()
        .method(Method::POST)
        .uri(CREATE)
        .header("content-type", "multipart/form-data; boundary=B0undary")
        .header("x-auth-token", &stack.admin_token)
        .body(lambda_http::Body::Binary(body.into_bytes()))
        .unwrap()
}

/// Every limit the operation record (DynamoDB) and the job (SQS) impose is checked while the
/// request is parsed: a 400 naming the limit, nothing claimed — never a claim, a rollback and
/// a 503 that no retry can fix. The deepest values the store keeps go through end to end.
#[tokio::test]
async fn values_the_store_or_queue_cannot_hold_are_400_before_any_claim() {
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "v1", "Default").await;
    let cases = [
        (nested(31), "nested more than 30 levels deep"),
        (nested(126), "nested more than 30 levels deep"),
        (
            json!({"list": [[[[nested(27)]]]]}),
            "nested more than 30 levels deep",
        ),
        (json!({"": 1}), "empty key"),
        (json!({"a": {"": 1}}), "empty key at a"),
        (json!({"big": 1e200}), "outside what the store keeps"),
        (json!({"tiny": -1e-200}), "outside what the store keeps"),
        (json!({"x": "a\u{FFFF}b"}), "U+FFFF"),
        (json!({"x\u{FFFE}": 1}), "U+FFFE"),
    ];
    for (values, expected) in cases {
        let reply = create(&stack, json!({"subcloud": "v1", "backup_values": values})).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{expected}: {:?}",
            reply.body
        );
        assert!(
            reply.message().contains(expected),
            "{expected}: {}",
            reply.message()
        );
        assert!(
            reply.message().contains("backup_values"),
            "{}",
            reply.message()
        );
    }
    let deep_yaml = (0..40).fold(String::from("x: 1"), |inner, _| {
        format!(
            "a:\n{}",
            inner
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        )
    });
    for (yaml, expected) in [
        (deep_yaml.as_str(), "nested more than 30 levels deep"),
        (
            "a: !!python/object/apply:os.system ['ls']",
            "YAML tag !!python/object/apply:os.system",
        ),
    ] {
        let reply = stack
            .request(Route::BackupCreate, multipart_create(&stack, "v1", yaml))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{expected}: {:?}",
            reply.body
        );
        assert!(reply.message().contains(expected), "{}", reply.message());
    }
    assert!(stack.operations().await.is_empty(), "nothing was claimed");
    assert!(stack.drain_jobs().await.is_empty(), "nothing was queued");
    let shown = stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/v1", None)
        .await;
    assert_eq!(shown.body["backup-status"], Value::Null);

    // At the limits the record and the job are written as given.
    let deepest = json!({"deep": nested(29), "big": 9.9e125, "tiny": 2e-130, "n": u64::MAX});
    let reply = create(&stack, json!({"subcloud": "v1", "backup_values": deepest})).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let records = records_of(&stack, id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(stack.drain_jobs().await[0]["options"]["values"], deepest);
}

/// SPEC §3: the claim orders operations on a subcloud, and their times follow that order even
/// when the instance that ended the previous one had a clock ahead of this one's.
#[tokio::test]
async fn a_claim_is_timed_after_the_subclouds_last_write_whatever_the_clocks() {
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "t1", "Default").await;
    // The previous operation ended, as written by an instance 5 s ahead of this one.
    let ahead = timestamp_of_epoch(epoch_now() + 5);
    stack
        .clients
        .dynamodb
        .update_item()
        .table_name(&stack.resources.subclouds_table)
        .key("id", AttributeValue::N(id.to_string()))
        .update_expression("SET updated_at = :at")
        .expression_attribute_values(":at", AttributeValue::S(ahead.clone()))
        .send()
        .await
        .unwrap();
    let reply = create(&stack, json!({"subcloud": "t1"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let since = reply.body["subclouds"][0]["operation"]["since"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(since > ahead, "the claim at {since} is not after {ahead}");
    let records = records_of(&stack, id).await;
    assert_eq!(records[0]["created_at"], since.as_str(), "{records:?}");
    assert!(stack.item(id).await["updated_at"].as_s().unwrap() >= &since);
}

/// An operation record carries `expires_at`, the operations table's TTL attribute, the
/// history period after it is written: 90 days by default (`Config`), or as configured
/// (`DCBACKUP_OPERATION_HISTORY_DAYS`); the provisioned table expires items by it.
#[tokio::test]
async fn operation_records_expire_after_the_history_period() {
    const DAY: u64 = 24 * 3600;
    let stack = Stack::new().await;
    let id = backup_ready(&stack, "ttl1", "Default").await;
    let before = epoch_now();
    let reply = create(&stack, json!({"subcloud": "ttl1"})).await;
    let after = epoch_now();
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let records = records_of(&stack, id).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let expires = records[0]["expires_at"].as_u64().expect("expires_at");
    let history = dcbackup::config::Config::DEFAULT_OPERATION_HISTORY_DAYS * DAY;
    assert!(
        (before + history..=after + history).contains(&expires),
        "expires_at {expires}, not {history} s after the request ({before}..={after})"
    );

    // The record written inside the claim expires as the inventory is told.
    let id2 = backup_ready(&stack, "ttl2", "Default").await;
    let inventory = Store::new(stack.clients.dynamodb.clone(), stack.resources.clone())
        .with_operation_history_days(20);
    let before = epoch_now();
    let req = claim_request(id2, OpKind::Create, before, Config::DEFAULT_LEASE_SECONDS);
    assert!(matches!(
        inventory.claim(&req).await.expect("claim"),
        ClaimOutcome::Claimed { .. }
    ));
    let after = epoch_now();
    let written = stack
        .operations()
        .await
        .into_iter()
        .find(|record| record["op_id"] == req.op_id.as_str())
        .expect("the second record");
    let expires = written["expires_at"].as_u64().expect("expires_at");
    assert!(
        (before + 20 * DAY..=after + 20 * DAY).contains(&expires),
        "expires_at {expires}, not 20 days after {before}..={after}"
    );

    let ttl = stack
        .clients
        .dynamodb
        .describe_time_to_live()
        .table_name(&stack.resources.operations_table)
        .send()
        .await
        .expect("describe TTL")
        .time_to_live_description
        .expect("a TTL description");
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
}
