//! The race test of the slot: in each of 50 rounds, 200 create requests against one
//! subcloud and 200 against three groups and their members, sent at the same instant from
//! tokio tasks in this process and from four separate `race-client` processes. Exactly
//! one operation may start per subcloud, checked in the table and the operation records,
//! not only in the answers.

use dcbackup_tests::race::{fire, now_ms, spec_json, Outcome, Spec, Target};
use dcbackup_tests::Stack;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

const ROUNDS: usize = 50;
const PROCESSES: usize = 4;
/// Requests per round against the single subcloud, and against the groups.
const PER_TARGET_SET: usize = 200;
const GROUPS: usize = 3;
const MEMBERS: usize = 3;

/// Registers the round's subclouds: one alone, and three groups of three.
async fn seed_round(stack: &Stack, round: usize) -> (String, Vec<(String, Vec<String>)>) {
    let ready = |group: &str| json!({"group_id": group, "management-state": "managed", "availability-status": "online"});
    let solo = format!("solo-{round}");
    stack.register(&solo, ready("Default")).await;
    let mut groups = Vec::new();
    for g in 0..GROUPS {
        let group = format!("g{round}-{g}");
        stack.create_group(&group).await;
        let mut members = Vec::new();
        for m in 0..MEMBERS {
            let name = format!("m{round}-{g}-{m}");
            stack.register(&name, ready(&group)).await;
            members.push(name);
        }
        groups.push((group, members));
    }
    (solo, groups)
}

/// `count` requests: alternately a whole group and one of its members, so group and
/// single-subcloud requests overlap on every member.
fn group_targets(groups: &[(String, Vec<String>)], count: usize, offset: usize) -> Vec<Target> {
    (0..count)
        .map(|i| {
            let (group, members) = &groups[(i + offset) % groups.len()];
            if i % 2 == 0 {
                Target::Group(group.clone())
            } else {
                Target::Subcloud(members[(i / 2 + offset) % members.len()].clone())
            }
        })
        .collect()
}

fn spawn_client(spec: &Spec) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_race-client"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting a race-client process");
    child
        .stdin
        .take()
        .expect("the child's stdin")
        .write_all(spec_json(spec).to_string().as_bytes())
        .expect("sending the spec");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_operation_per_subcloud_under_racing_requests() {
    let stack = Stack::new().await;
    let mut all_subclouds = Vec::new();
    for round in 0..ROUNDS {
        let (solo, groups) = seed_round(&stack, round).await;
        let in_process = PER_TARGET_SET / 2;
        let per_child = (PER_TARGET_SET - in_process) / PROCESSES;
        let start_at_ms = now_ms() + 800;

        let children: Vec<_> = (0..PROCESSES)
            .map(|p| {
                let mut targets = vec![Target::Subcloud(solo.clone()); per_child];
                targets.extend(group_targets(&groups, per_child, p));
                spawn_client(&Spec {
                    prefix: stack.prefix.clone(),
                    start_at_ms,
                    targets,
                })
            })
            .collect();
        let mut targets = vec![Target::Subcloud(solo.clone()); in_process];
        targets.extend(group_targets(&groups, in_process, PROCESSES));
        let mut outcomes: Vec<Outcome> = fire(&stack, start_at_ms, &targets).await;
        for child in children {
            let output = child.wait_with_output().expect("a race-client finishes");
            assert!(
                output.status.success(),
                "race-client failed: {:?}",
                output.status
            );
            let theirs: Vec<Outcome> =
                serde_json::from_slice(&output.stdout).expect("race-client prints its outcomes");
            outcomes.extend(theirs);
        }
        assert_eq!(
            outcomes.len(),
            2 * PER_TARGET_SET,
            "round {round}: every request answered"
        );

        let mut round_subclouds = vec![solo.clone()];
        round_subclouds.extend(groups.iter().flat_map(|(_, m)| m.clone()));
        let mut accepted: HashMap<&str, usize> = HashMap::new();
        for outcome in &outcomes {
            assert!(
                [200, 409].contains(&outcome.status),
                "round {round}: unexpected status {}",
                outcome.status
            );
            for name in &outcome.accepted {
                *accepted.entry(name.as_str()).or_default() += 1;
            }
        }
        for name in &round_subclouds {
            assert_eq!(
                accepted.get(name.as_str()),
                Some(&1),
                "round {round}: {name} accepted once"
            );
        }
        all_subclouds.extend(round_subclouds);
    }

    // The table and the records, not the answers, are the proof.
    let records = stack.operations().await;
    let list = stack
        .call(dcbackup::api::Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    let subclouds: HashMap<String, Value> = list.body["subclouds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s.clone()))
        .collect();
    assert_eq!(
        records.len(),
        all_subclouds.len(),
        "one record per subcloud, no more"
    );
    for name in &all_subclouds {
        let sc = &subclouds[name];
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["subcloud_name"] == *name)
            .collect();
        assert_eq!(mine.len(), 1, "{name}: exactly one operation record");
        assert_eq!(
            sc["operation"]["id"], mine[0]["op_id"],
            "{name}: the slot holds that operation"
        );
        assert_eq!(mine[0]["fence"], 1, "{name}: claimed exactly once");
        assert_eq!(sc["backup-status"], "validating");
    }
    let jobs = stack.drain_jobs().await;
    assert_eq!(
        jobs.len(),
        all_subclouds.len(),
        "one job per subcloud on the queue"
    );
}
