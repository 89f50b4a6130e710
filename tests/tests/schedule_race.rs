//! The scheduler and the API share one way to start operations (`operations::start`), so
//! they share the slot's guarantee: scheduled firings from three scheduler instances (each
//! with its own clients, as separate Lambda instances) and create requests from the API race
//! on the same subclouds at the same instant — over a thousand scheduled claims and more API
//! claims — and exactly one operation starts per subcloud, checked in the table and the
//! records. The scheduler's clock is injected (`run_at`), so nothing waits for a minute.

use aws_sdk_dynamodb::types::AttributeValue;
use dcbackup::api::Route;
use dcbackup_tests::{on_localstack, Stack};
use http::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;

const MEMBERS: usize = 40;
/// Schedules on the whole group, and on single members.
const GROUP_SCHEDULES: usize = 25;
const MEMBER_SCHEDULES: usize = 15;
const API_REQUESTS: usize = 120;
/// API requests on LocalStack. Its DynamoDB is DynamoDB Local behind LocalStack's Python
/// gateway, sharing the CPU with it; there the full burst (some 3,500 claims at once) makes a
/// transaction wait over 10 s for DynamoDB Local's per-table write lock, which it then answers
/// with a 500 ("This request will succeed in actual DynamoDB API"), a 503 here after the SDK's
/// retries. A third of the requests still race the three schedulers' thousand claims.
const API_REQUESTS_ON_LOCALSTACK: usize = 40;
const SCHEDULERS: usize = 3;

async fn next_run(stack: &Stack, id: u64) -> u64 {
    let item = stack
        .clients
        .dynamodb
        .get_item()
        .table_name(&stack.resources.schedules_table)
        .key("id", AttributeValue::N(id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    item["next_run"].as_n().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_and_api_claims_race_with_zero_double_claims() {
    let stack = Stack::new().await;
    stack.create_group("race").await;
    let ready =
        json!({"group_id": "race", "management-state": "managed", "availability-status": "online"});
    let mut members = Vec::new();
    for m in 0..MEMBERS {
        let name = format!("r{m}");
        stack.register(&name, ready.clone()).await;
        members.push(name);
    }
    let mut ids = Vec::new();
    for s in 0..GROUP_SCHEDULES + MEMBER_SCHEDULES {
        let target = if s < GROUP_SCHEDULES {
            json!({"group": "race"})
        } else {
            json!({"subcloud": members[s % MEMBERS]})
        };
        let mut body = json!({"name": format!("s{s}"), "cron": "* * * * *"});
        body.as_object_mut()
            .unwrap()
            .extend(target.as_object().unwrap().clone());
        let reply = stack
            .call(Route::SchedulesCreate, "/v1.0/backup-schedules", Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        ids.push(reply.body["id"].as_u64().unwrap());
    }
    // The instant every schedule is due at.
    let mut now = 0;
    for id in &ids {
        now = now.max(next_run(&stack, *id).await);
    }

    let instances =
        futures::future::join_all((0..SCHEDULERS).map(|_| Stack::attach(&stack.prefix))).await;
    let schedulers: Vec<_> = instances.iter().map(|i| i.scheduler()).collect();
    let runs = futures::future::join_all(schedulers.iter().map(|s| s.run_at(now)));
    let api_requests = if on_localstack() {
        API_REQUESTS_ON_LOCALSTACK
    } else {
        API_REQUESTS
    };
    let requests = futures::future::join_all((0..api_requests).map(|i| {
        let body = if i % 2 == 0 {
            json!({"group": "race"})
        } else {
            json!({"subcloud": members[(i / 2) % MEMBERS]})
        };
        let stack = &stack;
        async move {
            stack
                .call(Route::BackupCreate, "/v1.0/subcloud-backup", Some(body))
                .await
        }
    }));
    let (runs, replies) = tokio::join!(runs, requests);

    let mut accepted: HashMap<String, usize> = HashMap::new();
    for reply in &replies {
        assert!(
            [StatusCode::OK, StatusCode::CONFLICT].contains(&reply.status),
            "{:?}",
            reply.body
        );
        // `subclouds` lists every member as it stands; the ones not taken are also listed
        // under `skipped` or `failed`.
        let refused: Vec<&Value> = ["skipped", "failed"]
            .iter()
            .flat_map(|key| reply.body[*key].as_array().into_iter().flatten())
            .map(|sc| &sc["name"])
            .collect();
        for sc in reply.body["subclouds"].as_array().into_iter().flatten() {
            if reply.status == StatusCode::OK && !refused.contains(&&sc["name"]) {
                *accepted
                    .entry(sc["name"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    let (mut fired, mut scheduled_claims, mut scheduled_accepted) = (0, 0, 0);
    for run in runs {
        let run = run.expect("a scheduler run");
        fired += run.fired;
        scheduled_claims += run.accepted + run.skipped;
        scheduled_accepted += run.accepted;
    }
    assert_eq!(
        fired,
        GROUP_SCHEDULES + MEMBER_SCHEDULES,
        "every schedule fired once"
    );
    assert_eq!(
        scheduled_claims,
        GROUP_SCHEDULES * MEMBERS + MEMBER_SCHEDULES,
        "every scheduled claim was made and answered"
    );
    assert!(scheduled_claims >= 1000);
    let api_accepted: usize = accepted.values().sum();
    assert_eq!(
        api_accepted + scheduled_accepted,
        MEMBERS,
        "one start per subcloud in all"
    );
    assert!(accepted.values().all(|n| *n == 1));

    // The table and the records, not the answers, are the proof.
    let records = stack.operations().await;
    assert_eq!(records.len(), MEMBERS, "one record per subcloud, no more");
    let list = stack
        .call(Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    let subclouds: HashMap<String, Value> = list.body["subclouds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone()))
        .collect();
    for name in &members {
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["subcloud_name"] == *name)
            .collect();
        assert_eq!(mine.len(), 1, "{name}: exactly one operation record");
        assert_eq!(
            subclouds[name]["operation"]["id"], mine[0]["op_id"],
            "{name}"
        );
        assert_eq!(mine[0]["fence"], 1, "{name}: claimed exactly once");
        assert_eq!(subclouds[name]["backup-status"], "validating");
    }
    assert_eq!(
        stack.drain_jobs().await.len(),
        MEMBERS,
        "one job per subcloud"
    );
    for id in ids {
        let shown = stack
            .call(
                Route::SchedulesShow,
                &format!("/v1.0/backup-schedules/{id}"),
                None,
            )
            .await;
        assert_eq!(shown.body["last-run"]["state"], "fired", "{:?}", shown.body);
        assert_eq!(
            next_run(&stack, id).await,
            now + 60,
            "advanced past the firing"
        );
    }
}
