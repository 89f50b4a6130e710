//! Backup schedules (SPEC §5) on the local engines: the routes, and the scheduler fired
//! with an injected clock (`Scheduler::run_at`), so no test waits for a minute to pass.

use aws_sdk_dynamodb::types::AttributeValue;
use dcbackup::api::Route;
use dcbackup_tests::{token, Stack};
use http::StatusCode;
use serde_json::{json, Value};

const SCHEDULES: &str = "/v1.0/backup-schedules";

fn at(text: &str) -> u64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp() as u64
}

async fn create(stack: &Stack, body: Value) -> Value {
    let reply = stack
        .call(Route::SchedulesCreate, SCHEDULES, Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

async fn show(stack: &Stack, name: &str) -> Value {
    let reply = stack
        .call(Route::SchedulesShow, &format!("{SCHEDULES}/{name}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

/// Sets a schedule's next run as if it had been computed at an earlier time.
async fn set_next_run(stack: &Stack, id: u64, next_run: u64) {
    stack
        .clients
        .dynamodb
        .update_item()
        .table_name(&stack.resources.schedules_table)
        .key("id", AttributeValue::N(id.to_string()))
        .update_expression("SET next_run = :n")
        .expression_attribute_values(":n", AttributeValue::N(next_run.to_string()))
        .send()
        .await
        .expect("setting next_run");
}

/// The stored next run (Unix seconds), if any.
async fn next_run(stack: &Stack, id: u64) -> Option<u64> {
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
    item.get("next_run")
        .map(|v| v.as_n().unwrap().parse().unwrap())
}

async fn ready_group(stack: &Stack, group: &str, members: &[&str]) {
    stack.create_group(group).await;
    for name in members {
        stack
            .register(
                name,
                json!({"group_id": group, "management-state": "managed", "availability-status": "online"}),
            )
            .await;
    }
}

#[tokio::test]
async fn schedules_are_created_read_updated_and_deleted() {
    let stack = Stack::new().await;
    ready_group(&stack, "edge", &["sc1", "sc2"]).await;
    let created = create(
        &stack,
        json!({"name": "nightly", "group": "edge", "cron": "0 2 * * *",
               "timezone": "Europe/Berlin", "start_window": 30, "retain": 3,
               "backup_values": {"backup_dir": "/opt/backups", "ansible_become_pass": "x"}}),
    )
    .await;
    assert_eq!(created["name"], "nightly");
    assert_eq!(created["group_id"], 2);
    assert_eq!(created["subcloud_id"], Value::Null);
    assert_eq!(created["retain"], 3);
    assert_eq!(created["start_window"], 30);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["last-run"], Value::Null);
    assert_eq!(
        created["backup_values"],
        json!({"backup_dir": "/opt/backups"}),
        "secrets are not stored"
    );
    let next = created["next-run"].as_str().expect("a next run");
    assert!(next.ends_with(":00:00.000000"), "{next}");

    let by_id = show(&stack, &created["id"].to_string()).await;
    assert_eq!(by_id, created);
    let list = stack.call(Route::SchedulesList, SCHEDULES, None).await;
    assert_eq!(list.body["backup_schedules"], json!([created]));

    // A reader may look, not change.
    let reader = token(&["reader"], "admin");
    let path = format!("{SCHEDULES}/nightly");
    let looked = stack
        .call_as(&reader, Route::SchedulesShow, &path, None)
        .await;
    assert_eq!(looked.status, StatusCode::OK);
    let listed = stack
        .call_as(&reader, Route::SchedulesList, SCHEDULES, None)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let denied = stack
        .call_as(
            &reader,
            Route::SchedulesUpdate,
            &path,
            Some(json!({"retain": 1})),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{:?}", denied.body);
    let operator = token(&["operator"], "admin");
    let allowed = stack
        .call_as(
            &operator,
            Route::SchedulesUpdate,
            &path,
            Some(json!({"retain": 1})),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK, "{:?}", allowed.body);

    let updated = stack
        .call(
            Route::SchedulesUpdate,
            &path,
            Some(json!({"name": "daily", "subcloud": "sc1", "cron": "@daily", "timezone": "UTC", "start_window": 0})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{:?}", updated.body);
    assert_eq!(updated.body["subcloud_id"], 1);
    assert_eq!(updated.body["group_id"], Value::Null);
    assert_eq!(updated.body["start_window"], Value::Null);
    assert!(updated.body["next-run"]
        .as_str()
        .unwrap()
        .ends_with(" 00:00:00.000000"));
    let gone = stack.call(Route::SchedulesShow, &path, None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "renamed");

    let disabled = stack
        .call(
            Route::SchedulesUpdate,
            &format!("{SCHEDULES}/daily"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        disabled.body["next-run"],
        Value::Null,
        "{:?}",
        disabled.body
    );

    let deleted = stack
        .call(Route::SchedulesDelete, &format!("{SCHEDULES}/daily"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let again = stack
        .call(Route::SchedulesDelete, &format!("{SCHEDULES}/daily"), None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    // The name is free again.
    create(
        &stack,
        json!({"name": "daily", "subcloud": "sc2", "cron": "@hourly"}),
    )
    .await;
}

#[tokio::test]
async fn bad_fields_are_400s_naming_the_field() {
    let stack = Stack::new().await;
    ready_group(&stack, "edge", &["sc1"]).await;
    create(
        &stack,
        json!({"name": "taken", "group": "edge", "cron": "@daily"}),
    )
    .await;
    let cases = [
        (
            json!({"name": "a", "group": "edge", "cron": "0 25 * * *"}),
            "'cron'",
        ),
        (
            json!({"name": "a", "group": "edge", "cron": "* * * * * *"}),
            "'cron'",
        ),
        (
            json!({"name": "a", "group": "edge", "cron": "@often"}),
            "'cron'",
        ),
        (
            json!({"name": "a", "group": "edge", "cron": "@daily", "timezone": "Mars/Base"}),
            "'timezone'",
        ),
        (
            json!({"name": "a", "group": "nowhere", "cron": "@daily"}),
            "'group'",
        ),
        (
            json!({"name": "a", "subcloud": "nobody", "cron": "@daily"}),
            "'subcloud'",
        ),
        (
            json!({"name": "a", "subcloud": 99, "cron": "@daily"}),
            "'subcloud'",
        ),
        (
            json!({"name": "a", "group": "edge", "cron": "@daily", "retain": -1}),
            "'retain'",
        ),
        (
            json!({"name": "a", "group": "edge", "cron": "@daily", "start_window": 100000}),
            "'start_window'",
        ),
        (json!({"name": "a", "group": "edge"}), "'cron'"),
        (json!({"group": "edge", "cron": "@daily"}), "'name'"),
        (
            json!({"name": "a", "cron": "@daily"}),
            "'subcloud' or 'group'",
        ),
        (
            json!({"name": "a", "group": "edge", "subcloud": "sc1", "cron": "@daily"}),
            "'subcloud' and 'group'",
        ),
        (
            json!({"name": "a", "group": "edge", "cron": "@daily", "registry_images": true}),
            "registry_images",
        ),
        (
            json!({"name": "a", "group": "edge", "cron": "@daily", "colour": "red"}),
            "Unexpected parameter",
        ),
        (
            json!({"name": "a", "group": "edge", "cron": "@daily", "enabled": "maybe"}),
            "enabled",
        ),
    ];
    for (body, named) in cases {
        let reply = stack
            .call(Route::SchedulesCreate, SCHEDULES, Some(body.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            reply.body
        );
        assert!(
            reply.message().contains(named),
            "{body}: {}",
            reply.message()
        );
    }
    let dup = stack
        .call(
            Route::SchedulesCreate,
            SCHEDULES,
            Some(json!({"name": "taken", "group": "edge", "cron": "@daily"})),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{:?}", dup.body);
    let bad_patch = stack
        .call(
            Route::SchedulesUpdate,
            &format!("{SCHEDULES}/taken"),
            Some(json!({"timezone": "Nowhere/At_All"})),
        )
        .await;
    assert_eq!(bad_patch.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_patch.message().contains("'timezone'"),
        "{}",
        bad_patch.message()
    );
    assert_eq!(
        show(&stack, "taken").await["timezone"],
        "UTC",
        "nothing written"
    );
}

#[tokio::test]
async fn a_due_schedule_fires_once_under_concurrent_runs_and_busy_members_are_skipped() {
    let stack = Stack::new().await;
    ready_group(&stack, "edge", &["sc1", "sc2", "sc3"]).await;
    // sc2 is busy with an operation started through the API.
    let busy = stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"subcloud": "sc2"})),
        )
        .await;
    assert_eq!(busy.status, StatusCode::OK);
    let schedule = create(
        &stack,
        json!({"name": "hourly", "group": "edge", "cron": "@hourly"}),
    )
    .await;
    let id = schedule["id"].as_u64().unwrap();
    let due = next_run(&stack, id).await.unwrap();

    // Not due yet: nothing happens.
    let early = stack.scheduler().run_at(due - 1).await.unwrap();
    assert_eq!((early.fired, early.lost), (0, 0));

    // Two runs at once, as two Lambda instances (each with its own clients) would.
    let other = Stack::attach(&stack.prefix).await;
    let (a, b) = (stack.scheduler(), other.scheduler());
    let (ra, rb) = tokio::join!(a.run_at(due + 5), b.run_at(due + 5));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.fired + rb.fired, 1, "{ra:?} {rb:?}");
    assert_eq!(ra.accepted + rb.accepted, 2, "sc1 and sc3 started");
    assert_eq!(ra.skipped + rb.skipped, 1, "sc2 skipped");
    // And once more, as a late duplicate delivery: nothing is due any more.
    let late = stack.scheduler().run_at(due + 30).await.unwrap();
    assert_eq!((late.fired, late.lost), (0, 0));

    let shown = show(&stack, "hourly").await;
    let run = &shown["last-run"];
    assert_eq!(run["state"], "fired");
    assert_eq!(run["accepted"], 2);
    assert_eq!(run["operations"].as_array().unwrap().len(), 2);
    assert_eq!(run["skipped"][0]["name"], "sc2");
    assert!(
        run["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("Please wait until it finishes"),
        "{run}"
    );
    assert_eq!(next_run(&stack, id).await, Some(due + 3600));

    // One API operation plus two scheduled ones, each recorded once and queued once.
    let records = stack.operations().await;
    assert_eq!(records.len(), 3);
    let scheduled: Vec<&Value> = records
        .iter()
        .filter(|r| r["requested_by"] == "schedule:hourly")
        .collect();
    assert_eq!(scheduled.len(), 2);
    assert!(scheduled.iter().all(|r| r["schedule_id"] == id));
    assert_eq!(stack.drain_jobs().await.len(), 3);
}

#[tokio::test]
async fn a_duplicated_inline_event_starts_once() {
    let stack = Stack::new().await;
    ready_group(&stack, "edge", &["sc1", "sc2"]).await;
    let event = json!({
        "version": "0", "id": "0f0e0d0c-1b1a-4c2d-8e3f-4a5b6c7d8e9f",
        "detail-type": "Scheduled Event", "source": "aws.scheduler",
        "time": "2026-11-25T10:00:00Z", "detail": {"group": "edge"}
    });
    let other = Stack::attach(&stack.prefix).await;
    let (a, b) = (stack.scheduler(), other.scheduler());
    let (ra, rb) = tokio::join!(a.handle(&event), b.handle(&event));
    // One delivery starts the operations; the other replays its answer or, while the first
    // is still running, fails so that EventBridge delivers it again later.
    let answers: Vec<Value> = [ra, rb].into_iter().filter_map(Result::ok).collect();
    assert!(!answers.is_empty());
    let again = stack.scheduler().handle(&event).await.unwrap();
    assert_eq!(again["duplicate"], true);
    for answer in &answers {
        assert_eq!(answer["op_ids"], again["op_ids"]);
    }
    assert_eq!(again["op_ids"].as_array().unwrap().len(), 2);
    assert_eq!(stack.operations().await.len(), 2);
    assert_eq!(stack.drain_jobs().await.len(), 2);

    // A bad inline target is recorded in the answer, not retried forever.
    let bad = json!({"id": "1f0e0d0c-1b1a-4c2d-8e3f-4a5b6c7d8e9f", "detail": {"group": "edge", "colour": 1}});
    let answer = stack.scheduler().handle(&bad).await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("Unexpected parameter"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_disabled_schedule_never_fires() {
    let stack = Stack::new().await;
    ready_group(&stack, "edge", &["sc1"]).await;
    let off = create(
        &stack,
        json!({"name": "off", "group": "edge", "cron": "* * * * *", "enabled": false}),
    )
    .await;
    assert_eq!(off["next-run"], Value::Null);
    let on = create(
        &stack,
        json!({"name": "on", "group": "edge", "cron": "* * * * *"}),
    )
    .await;
    let on_id = on["id"].as_u64().unwrap();
    let due = next_run(&stack, on_id).await.unwrap();
    // Disabled after its next run was computed: it is off the index and its claim fails.
    let reply = stack
        .call(
            Route::SchedulesUpdate,
            &format!("{SCHEDULES}/on"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let far = due + 365 * 24 * 3600;
    for now in [due, due + 60, far] {
        let report = stack.scheduler().run_at(now).await.unwrap();
        assert_eq!(
            (report.fired, report.missed, report.lost),
            (0, 0, 0),
            "at {now}"
        );
    }
    assert!(stack.operations().await.is_empty());
    assert_eq!(show(&stack, "on").await["last-run"], Value::Null);
    assert_eq!(show(&stack, "off").await["last-run"], Value::Null);
}

#[tokio::test]
async fn a_firing_later_than_its_start_window_is_recorded_as_missed() {
    let stack = Stack::new().await;
    ready_group(&stack, "edge", &["sc1"]).await;
    let s = create(
        &stack,
        json!({"name": "windowed", "group": "edge", "cron": "@hourly", "start_window": 10}),
    )
    .await;
    let id = s["id"].as_u64().unwrap();
    let due = next_run(&stack, id).await.unwrap();
    let report = stack.scheduler().run_at(due + 11 * 60).await.unwrap();
    assert_eq!((report.fired, report.missed), (0, 1));
    let run = show(&stack, "windowed").await["last-run"].clone();
    assert_eq!(run["state"], "missed", "{run}");
    assert_eq!(run["accepted"], 0);
    assert!(stack.operations().await.is_empty(), "nothing started");
    assert_eq!(
        next_run(&stack, id).await,
        Some(due + 3600),
        "the next one is still due"
    );
    // Within the window, it runs.
    let report = stack
        .scheduler()
        .run_at(due + 3600 + 10 * 60)
        .await
        .unwrap();
    assert_eq!((report.fired, report.accepted), (1, 1));
}

#[tokio::test]
async fn dst_repeat_fires_once_and_gap_fires_at_the_next_valid_instant() {
    let stack = Stack::new().await;
    ready_group(&stack, "edge", &["sc1"]).await;
    // 2026-11-01 in New York: 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
    let repeat = create(&stack, json!({"name": "repeat", "subcloud": "sc1", "cron": "30 1 * * *", "timezone": "America/New_York"})).await;
    let id = repeat["id"].as_u64().unwrap();
    set_next_run(&stack, id, at("2026-11-01T05:30:00Z")).await;
    let first = stack
        .scheduler()
        .run_at(at("2026-11-01T05:30:00Z"))
        .await
        .unwrap();
    assert_eq!(first.fired, 1);
    assert_eq!(next_run(&stack, id).await, Some(at("2026-11-02T06:30:00Z")));
    let second = stack
        .scheduler()
        .run_at(at("2026-11-01T06:30:00Z"))
        .await
        .unwrap();
    assert_eq!(
        second.fired, 0,
        "01:30 EST is the same wall-clock time: no second firing"
    );

    // 2026-03-08 in New York: 02:30 does not exist (02:00 EST jumps to 03:00 EDT).
    let gap = create(&stack, json!({"name": "gap", "group": "edge", "cron": "30 2 * * *", "timezone": "America/New_York"})).await;
    let gap_id = gap["id"].as_u64().unwrap();
    set_next_run(&stack, gap_id, at("2026-03-07T07:30:00Z")).await;
    let fired = stack
        .scheduler()
        .run_at(at("2026-03-07T07:30:00Z"))
        .await
        .unwrap();
    assert_eq!(fired.fired, 1);
    assert_eq!(
        next_run(&stack, gap_id).await,
        Some(at("2026-03-08T07:00:00Z")),
        "03:00 EDT, the first valid instant"
    );
}
