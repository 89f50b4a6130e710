//! The race test of the slot (SPEC §3). Each round seeds fresh subclouds for five scenarios
//! and fires every request of the round at once — from tokio tasks in this process and from
//! four `race-client` processes, all released by one go signal after each said it was ready —
//! so any lock held per process, rather than the conditional write, would let two claims win:
//! - creates on a lone subcloud, and on groups against single creates on their members;
//! - creates on subclouds whose slot is held under an expired lease (each claim recovers it
//!   first, then claims), by group and by member;
//! - restores, and deletes of a release, by group and by member;
//! - inventory writes against claims: `PATCH` of each field an operation drives (one per
//!   subcloud and round, in turn) against creates, and `DELETE` of the subcloud against
//!   restores.
//!
//! Exactly one operation may start per subcloud, and an inventory write wins only where no
//! claim did or before it (SPEC §3); checked in the answers (whose `subclouds` list every
//! subcloud of the target), then in the table and the operation records: no claimed subcloud
//! was written after its claim (its `updated-at` is still the claim's `since`).

use dcbackup::api::Route;
use dcbackup_tests::race::{fire, Outcome, Request, Spec, Target, GO, READY};
use dcbackup_tests::{on_localstack, Stack};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

/// Rounds, and racing processes besides this one. Fewer rounds than when only creates raced
/// (50): each round now races five scenarios, and the whole test stays about as long.
const ROUNDS: usize = 12;
/// Rounds on LocalStack: its Python gateway answers ~150 requests/s on one core, so 12 rounds
/// took ~9 minutes there, most of `make test ENGINES=localstack`. Its DynamoDB is DynamoDB
/// Local behind that gateway, the engine whose conditional writes the 12 rounds race on
/// DynamoDB Local itself; each round there still races every scenario from every process.
const ROUNDS_ON_LOCALSTACK: usize = 4;
const PROCESSES: usize = 4;
/// Requests per scenario and round, over all processes.
const PER_SCENARIO: usize = 100;
const MEMBERS: usize = 3;
const RELEASE: &str = "24.09";

/// What one round races on.
struct Round {
    /// The lone subcloud of the create race.
    solo: String,
    /// Groups with their members, by scenario.
    create: Vec<(String, Vec<String>)>,
    expired: (String, Vec<String>),
    restore: (String, Vec<String>),
    delete: (String, Vec<String>),
    /// Managed subclouds, each with the field a PATCH races creates with.
    patched: Vec<(String, &'static Guarded)>,
    /// The empty group the `group_id` PATCH moves its subcloud to.
    moved_to: String,
    /// Unmanaged subclouds with a backup: restores against DELETE.
    removed: Vec<String>,
}

/// A PATCH of one field an operation drives (`SubcloudPatch::touches_operation_state`), so
/// it must lose to a claim that holds the slot: one per field, each raced in turn.
struct Guarded {
    field: &'static str,
    /// The value written; `None`: the round's `moved_to` group.
    value: Option<&'static str>,
    /// Whether the written value makes a create invalid: then the PATCH and a create never
    /// both win. Otherwise both may, the PATCH first.
    refuses_create: bool,
}

const GUARDED: [Guarded; 7] = [
    Guarded {
        field: "management-state",
        value: Some("unmanaged"),
        refuses_create: true,
    },
    Guarded {
        field: "availability-status",
        value: Some("offline"),
        refuses_create: true,
    },
    Guarded {
        field: "deploy-status",
        value: Some("install-failed"),
        refuses_create: true,
    },
    Guarded {
        field: "backup-status",
        value: Some("failed"),
        refuses_create: false,
    },
    Guarded {
        field: "group_id",
        value: None,
        refuses_create: false,
    },
    Guarded {
        field: "agent-url",
        value: Some("https://127.0.0.3:8443"),
        refuses_create: false,
    },
    Guarded {
        field: "bootstrap-address",
        value: Some("127.0.0.4"),
        refuses_create: false,
    },
];

impl Guarded {
    fn body(&self, round: &Round) -> Value {
        let value = self.value.unwrap_or(&round.moved_to);
        json!({ self.field: value })
    }
}

fn ready(group: &str) -> Value {
    json!({"group_id": group, "management-state": "managed", "availability-status": "online"})
}

fn unmanaged(group: &str) -> Value {
    json!({"group_id": group, "management-state": "unmanaged", "availability-status": "online"})
}

async fn group_of(stack: &Stack, name: &str, extra: fn(&str) -> Value) -> (String, Vec<String>) {
    stack.create_group(name).await;
    let mut members = Vec::new();
    for m in 0..MEMBERS {
        let member = format!("{name}-{m}");
        stack.register(&member, extra(name)).await;
        members.push(member);
    }
    (name.to_owned(), members)
}

async fn with_backup(stack: &Stack, name: &str, extra: Value) {
    let sc = stack.register(name, extra).await;
    stack
        .add_backup(sc["id"].as_u64().expect("an id"), RELEASE, false)
        .await;
}

async fn seed(stack: &mut Stack, r: usize) -> Round {
    let solo = format!("solo{r}");
    stack.register(&solo, ready("Default")).await;
    let mut create = Vec::new();
    for g in 0..2 {
        create.push(group_of(stack, &format!("c{r}x{g}"), ready).await);
    }
    // Slots held by creates whose lease has already expired (a lease of 0 s).
    let expired = group_of(stack, &format!("e{r}"), ready).await;
    let lease = stack.app.lease_seconds;
    stack.app.lease_seconds = 0;
    let held = stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"group": expired.0})),
        )
        .await;
    stack.app.lease_seconds = lease;
    assert_eq!(held.status, 200, "{:?}", held.body);
    let restore = group_of(stack, &format!("r{r}"), unmanaged).await;
    let delete = group_of(stack, &format!("d{r}"), ready).await;
    for name in restore.1.iter().chain(&delete.1) {
        let sc = stack
            .call(
                Route::SubcloudsShow,
                &format!("/v1.0/subclouds/{name}"),
                None,
            )
            .await;
        stack
            .add_backup(sc.body["id"].as_u64().expect("an id"), RELEASE, false)
            .await;
    }
    let mut patched = Vec::new();
    for i in 0..MEMBERS {
        let name = format!("p{r}x{i}");
        let mut extra = ready("Default");
        extra["agent-url"] = json!("https://127.0.0.2:8443");
        stack.register(&name, extra).await;
        patched.push((name, &GUARDED[(r * MEMBERS + i) % GUARDED.len()]));
    }
    let moved_to = format!("m{r}");
    stack.create_group(&moved_to).await;
    let removed: Vec<String> = (0..MEMBERS).map(|i| format!("x{r}x{i}")).collect();
    for name in &removed {
        with_backup(stack, name, unmanaged("Default")).await;
    }
    Round {
        solo,
        create,
        expired,
        restore,
        delete,
        patched,
        moved_to,
        removed,
    }
}

/// The `i`-th of a scenario's requests: alternately the group and one of its members.
fn on_group_or_member(
    (group, members): &(String, Vec<String>),
    i: usize,
    make: impl Fn(Target) -> Request,
) -> Request {
    if i.is_multiple_of(2) {
        make(Target::Group(group.clone()))
    } else {
        make(Target::Subcloud(members[(i / 2) % members.len()].clone()))
    }
}

/// The round's requests, the `i`-th of each scenario; spread over the processes by index.
fn requests(round: &Round) -> Vec<Request> {
    let mut all = Vec::new();
    for i in 0..PER_SCENARIO {
        all.push(if i.is_multiple_of(2) {
            Request::Create(Target::Subcloud(round.solo.clone()))
        } else {
            on_group_or_member(
                &round.create[(i / 2) % round.create.len()],
                i / 2,
                Request::Create,
            )
        });
        all.push(on_group_or_member(&round.expired, i, Request::Create));
        let members = round.restore.1.clone();
        all.push(on_group_or_member(&round.restore, i, |target| {
            Request::Restore {
                target,
                members: members.clone(),
            }
        }));
        all.push(on_group_or_member(&round.delete, i, |target| {
            Request::Delete {
                target,
                release: RELEASE.into(),
            }
        }));
        // Every third request to each subcloud is the inventory write: the subcloud is picked
        // by i / 3, so that each one gets writes and claims (picked by i, the writes would
        // all land on one subcloud and the claims on the others, which then never race).
        let (p, guarded) = &round.patched[(i / 3) % MEMBERS];
        all.push(if i.is_multiple_of(3) {
            Request::Patch {
                subcloud: p.clone(),
                body: guarded.body(round),
            }
        } else {
            Request::Create(Target::Subcloud(p.clone()))
        });
        let x = &round.removed[(i / 3) % MEMBERS];
        all.push(if i.is_multiple_of(3) {
            Request::Remove(x.clone())
        } else {
            Request::Restore {
                target: Target::Subcloud(x.clone()),
                members: vec![x.clone()],
            }
        });
    }
    all
}

/// A race-client started with its spec, not yet released.
struct Client {
    child: Child,
    stdin: ChildStdin,
}

fn spawn_client(spec: &Spec) -> Client {
    let mut child = Command::new(env!("CARGO_BIN_EXE_race-client"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting a race-client process");
    let mut stdin = child.stdin.take().expect("the child's stdin");
    writeln!(
        stdin,
        "{}",
        serde_json::to_string(spec).expect("a spec serializes")
    )
    .expect("sending the spec");
    Client { child, stdin }
}

/// Waits until every client said it is ready, then releases them all.
fn release(clients: &mut [Client]) {
    for client in clients.iter_mut() {
        let stdout = client.child.stdout.as_mut().expect("the child's stdout");
        let mut line = Vec::new();
        let mut byte = [0u8];
        // Byte by byte, so nothing after the ready line is taken from the pipe.
        while stdout.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        assert_eq!(
            String::from_utf8_lossy(&line),
            READY,
            "a race-client got ready"
        );
    }
    for client in clients.iter_mut() {
        writeln!(client.stdin, "{GO}")
            .and_then(|()| client.stdin.flush())
            .expect("sending go");
    }
}

fn outcomes_of(client: Client) -> Vec<Outcome> {
    let Client { mut child, stdin } = client;
    drop(stdin);
    let mut out = String::new();
    BufReader::new(child.stdout.take().expect("the child's stdout"))
        .read_line(&mut out)
        .expect("reading the outcomes");
    let status = child.wait().expect("a race-client finishes");
    assert!(status.success(), "race-client failed: {status:?}");
    serde_json::from_str(&out).expect("race-client prints its outcomes")
}

/// The subclouds of a request's target.
fn target_members(round: &Round, target: &Target) -> Vec<String> {
    match target {
        Target::Subcloud(name) => vec![name.clone()],
        Target::Group(group) => [&round.expired, &round.restore, &round.delete]
            .into_iter()
            .chain(&round.create)
            .find(|(g, _)| g == group)
            .map(|(_, m)| m.clone())
            .expect("a group of the round"),
    }
}

/// Checks each answer's shape and returns how often each subcloud was accepted, and the
/// subclouds an inventory write changed.
fn check_answers(
    r: usize,
    round: &Round,
    outcomes: &[Outcome],
) -> (HashMap<String, usize>, BTreeSet<String>) {
    let mut accepted: HashMap<String, usize> = HashMap::new();
    let mut written = BTreeSet::new();
    for o in outcomes {
        let ctx = format!("round {r}: {:?} answered {}", o.request, o.status);
        match &o.request {
            Request::Create(target)
            | Request::Restore { target, .. }
            | Request::Delete { target, .. } => {
                let members = target_members(round, target);
                let is_delete = matches!(o.request, Request::Delete { .. });
                match o.status {
                    204 if is_delete => {
                        for m in &members {
                            *accepted.entry(m.clone()).or_default() += 1;
                        }
                    }
                    200 | 207 if (o.status == 207) == is_delete => {
                        // SPEC §3: every subcloud of the target, accepted or not (a member
                        // deleted meanwhile is left out; none of these groups loses one).
                        let listed: BTreeSet<&String> = o.listed.iter().collect();
                        let want: BTreeSet<&String> = members.iter().collect();
                        assert_eq!(listed, want, "{ctx}: lists every member");
                        assert!(!o.accepted.is_empty(), "{ctx}: accepted some");
                        assert!(
                            o.refused.iter().all(|n| members.contains(n)),
                            "{ctx}: refused only members"
                        );
                        for m in &o.accepted {
                            *accepted.entry(m.clone()).or_default() += 1;
                        }
                    }
                    // Every member busy (409), or not valid any more: restored subclouds
                    // deleted meanwhile (404), or a subcloud a PATCH made invalid for a
                    // create before it (400).
                    409 => {}
                    400 if round
                        .patched
                        .iter()
                        .any(|(p, g)| *p == members[0] && g.refuses_create) => {}
                    404 if round.removed.contains(&members[0]) => {}
                    _ => panic!("{ctx}: {o:?}"),
                }
            }
            Request::Patch { subcloud, .. } | Request::Remove(subcloud) => match o.status {
                200 | 204 => {
                    written.insert(subcloud.clone());
                }
                // The slot is held (409), or the subcloud was deleted by another (404).
                409 => {}
                404 if matches!(o.request, Request::Remove(_)) => {}
                _ => panic!("{ctx}: {o:?}"),
            },
        }
    }
    (accepted, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_operation_per_subcloud_under_racing_requests() {
    let mut stack = Stack::new().await;
    // What each subcloud must end as: claimed once (with how many records, the expired one
    // included), or written by the inventory and never claimed.
    let mut claimed: Vec<(String, usize)> = Vec::new();
    let mut unclaimed: Vec<(String, Value)> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    // PATCHes refused because a claim held the slot: the scenario really raced them.
    let mut refused_writes = 0;
    let rounds = if on_localstack() {
        ROUNDS_ON_LOCALSTACK
    } else {
        ROUNDS
    };
    for r in 0..rounds {
        let round = seed(&mut stack, r).await;
        // The expired operations' jobs: lost, as their lease says.
        stack.drain_jobs().await;
        let claims_before = claimed.len();
        let all = requests(&round);
        let share = |p: usize| -> Vec<Request> {
            all.iter()
                .enumerate()
                .filter(|(i, _)| i % (PROCESSES + 1) == p)
                .map(|(_, req)| req.clone())
                .collect()
        };
        let mut clients: Vec<Client> = (0..PROCESSES)
            .map(|p| {
                spawn_client(&Spec {
                    prefix: stack.prefix.clone(),
                    requests: share(p),
                })
            })
            .collect();
        release(&mut clients);
        let mut outcomes = fire(&stack, &share(PROCESSES)).await;
        for client in clients {
            outcomes.extend(outcomes_of(client));
        }
        assert_eq!(
            outcomes.len(),
            all.len(),
            "round {r}: every request answered"
        );

        let (accepted, written) = check_answers(r, &round, &outcomes);
        refused_writes += outcomes
            .iter()
            .filter(|o| matches!(o.request, Request::Patch { .. }) && o.status == 409)
            .count();
        let once = |name: &String| {
            assert_eq!(
                accepted.get(name),
                Some(&1),
                "round {r}: {name} accepted once"
            );
        };
        once(&round.solo);
        claimed.push((round.solo.clone(), 1));
        for (_, members) in &round.create {
            members.iter().for_each(once);
            claimed.extend(members.iter().map(|m| (m.clone(), 1)));
        }
        round.expired.1.iter().for_each(once);
        claimed.extend(round.expired.1.iter().map(|m| (m.clone(), 2)));
        for members in [&round.restore.1, &round.delete.1] {
            members.iter().for_each(once);
            claimed.extend(members.iter().map(|m| (m.clone(), 1)));
        }
        // An inventory write and a claim never both win.
        for (name, guarded) in &round.patched {
            let won = accepted.get(name).copied().unwrap_or(0);
            if written.contains(name) && guarded.refuses_create {
                assert_eq!(won, 0, "round {r}: {name} written and claimed");
                unclaimed.push((name.clone(), guarded.body(&round)));
            } else {
                // A PATCH that leaves the create valid may also win, before the claim: the
                // table shows it did not come after (below).
                assert_eq!(won, 1, "round {r}: {name} not claimed once");
                claimed.push((name.clone(), 1));
            }
        }
        for name in &round.removed {
            let won = accepted.get(name).copied().unwrap_or(0);
            if written.contains(name) {
                assert_eq!(won, 0, "round {r}: {name} deleted and claimed");
                removed.push(name.clone());
            } else {
                assert_eq!(won, 1, "round {r}: {name} neither deleted nor claimed once");
                claimed.push((name.clone(), 1));
            }
        }
        let jobs = stack.drain_jobs().await;
        assert_eq!(
            jobs.len(),
            claimed.len() - claims_before,
            "round {r}: one job per claim on the queue"
        );
    }

    assert!(refused_writes > 0, "no PATCH ever met a held slot");

    // The table and the records, not the answers, are the proof.
    let records = stack.operations().await;
    let list = stack
        .call(Route::SubcloudsList, "/v1.0/subclouds", None)
        .await;
    let subclouds: HashMap<String, Value> = list.body["subclouds"]
        .as_array()
        .expect("a subcloud list")
        .iter()
        .map(|s| (s["name"].as_str().expect("a name").to_owned(), s.clone()))
        .collect();
    let of = |name: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|rec| rec["subcloud_name"] == name)
            .collect()
    };
    for (name, count) in &claimed {
        let sc = &subclouds[name];
        let mine = of(name);
        assert_eq!(mine.len(), *count, "{name}: {count} operation record(s)");
        let live: Vec<&&Value> = mine.iter().filter(|rec| rec["state"] == "queued").collect();
        assert_eq!(live.len(), 1, "{name}: one live operation");
        assert_eq!(
            sc["operation"]["id"], live[0]["op_id"],
            "{name}: the slot holds it"
        );
        // Every write sets updated-at, the claim to its `since`: a PATCH that won after the
        // claim would have moved it.
        assert_eq!(
            sc["updated-at"], sc["operation"]["since"],
            "{name}: not written after its claim"
        );
        assert_eq!(
            live[0]["fence"], *count,
            "{name}: claimed once after the expired one"
        );
        if *count == 2 {
            let old = mine
                .iter()
                .find(|rec| rec["state"] != "queued")
                .expect("the old one");
            assert_eq!(
                old["state"], "failed",
                "{name}: the expired operation recovered"
            );
        }
    }
    for (name, written) in &unclaimed {
        assert!(of(name).is_empty(), "{name}: written, never claimed");
        for (field, value) in written.as_object().expect("a PATCH body") {
            assert_eq!(subclouds[name][field], *value, "{name}: written");
        }
        assert!(subclouds[name]["operation"].is_null(), "{name}: slot free");
    }
    for name in &removed {
        assert!(of(name).is_empty(), "{name}: deleted, never claimed");
        assert!(!subclouds.contains_key(name), "{name}: deleted");
    }
}
