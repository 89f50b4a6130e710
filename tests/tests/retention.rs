//! Retention of scheduled central backups (SPEC §5) through real agents: after N+2 scheduled
//! backups of a subcloud, exactly the newest N made by the schedule are kept — records and
//! bucket objects — while a backup made by hand stays, and the operation history says what
//! retention removed.

use aws_sdk_dynamodb::types::AttributeValue;
use dcbackup::api::Route;
use dcbackup_tests::lab::Lab;
use http::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;

const RETAIN: usize = 2;

async fn objects(lab: &Lab, prefix: &str) -> BTreeSet<String> {
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

async fn next_run(lab: &Lab, id: u64) -> u64 {
    let item = lab
        .stack
        .clients
        .dynamodb
        .get_item()
        .table_name(&lab.stack.resources.schedules_table)
        .key("id", AttributeValue::N(id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    item["next_run"].as_n().unwrap().parse().unwrap()
}

fn key(op_id: &str) -> String {
    format!("ret1/24.09/{op_id}.tar.gz")
}

#[tokio::test]
async fn retention_keeps_exactly_the_newest_n_scheduled_central_backups() {
    let lab = Lab::new().await;
    let agent = lab.agent("ret1").await;
    let id = lab.register("ret1", &agent.url).await;

    // A backup made by hand: no schedule's retention may touch it.
    let manual = lab
        .stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"subcloud": "ret1"})),
        )
        .await;
    assert_eq!(manual.status, StatusCode::OK);
    let manual_op = manual.body["subclouds"][0]["operation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.run_to_end("ret1").await;

    let schedule = lab
        .stack
        .call(
            Route::SchedulesCreate,
            "/v1.0/backup-schedules",
            Some(json!({"name": "minutely", "subcloud": "ret1", "cron": "* * * * *", "retain": RETAIN})),
        )
        .await;
    assert_eq!(schedule.status, StatusCode::OK, "{:?}", schedule.body);
    let schedule_id = schedule.body["id"].as_u64().unwrap();

    let mut scheduled_ops = Vec::new();
    for _ in 0..RETAIN + 2 {
        let due = next_run(&lab, schedule_id).await;
        let report = lab.stack.scheduler().run_at(due).await.unwrap();
        assert_eq!((report.fired, report.accepted), (1, 1), "{report:?}");
        let shown = lab
            .stack
            .call(
                Route::SchedulesShow,
                "/v1.0/backup-schedules/minutely",
                None,
            )
            .await;
        let op = shown.body["last-run"]["operations"][0]
            .as_str()
            .unwrap()
            .to_owned();
        let done = lab.run_to_end("ret1").await;
        assert_eq!(done["backup-status"], "complete-central", "{done}");
        scheduled_ops.push(op);
    }

    let kept: BTreeSet<String> = scheduled_ops[2..].iter().cloned().collect();
    let removed: BTreeSet<String> = scheduled_ops[..2].iter().cloned().collect();
    let records = lab.stack.app.inventory.backups(id).await.unwrap();
    let recorded: BTreeSet<String> = records.iter().map(|b| b.op_id.to_string()).collect();
    let mut expected = kept.clone();
    expected.insert(manual_op.clone());
    assert_eq!(
        recorded, expected,
        "the newest {RETAIN} scheduled and the manual one"
    );

    let mut expected_objects: BTreeSet<String> = kept.iter().map(|op| key(op)).collect();
    expected_objects.insert(key(&manual_op));
    assert_eq!(
        objects(&lab, "ret1/").await,
        expected_objects,
        "the bucket holds exactly those"
    );

    // The history says which operation removed what, oldest first.
    let history = lab
        .stack
        .call(
            Route::OperationsHistory,
            "/v1.0/subclouds/ret1/operations",
            None,
        )
        .await;
    let mut retired = Vec::new();
    for op in history.body["operations"].as_array().unwrap() {
        for gone in op["retention-removed"].as_array().unwrap() {
            retired.push((
                op["id"].as_str().unwrap().to_owned(),
                gone["object"].as_str().unwrap().to_owned(),
            ));
        }
    }
    retired.sort();
    let mut want: Vec<(String, String)> = vec![
        (scheduled_ops[2].clone(), key(&scheduled_ops[0])),
        (scheduled_ops[3].clone(), key(&scheduled_ops[1])),
    ];
    want.sort();
    assert_eq!(retired, want);
    assert!(removed.iter().all(|op| !recorded.contains(op)));

    let sc = lab
        .stack
        .call(Route::SubcloudsShow, "/v1.0/subclouds/ret1", None)
        .await;
    assert_eq!(sc.body["backup-status"], "complete-central");
    let item = lab.stack.item(id).await;
    assert_eq!(
        item["central_backups"],
        AttributeValue::Ss(vec!["24.09".into()])
    );
}
