//! The README's shell blocks, taken from README.md itself so they cannot drift, run in order
//! against a real `make run` stack (`tools/run-local`: engines, demo inventory, agents, every
//! function behind `cargo lambda watch`, the poller) on free ports, checking the outcome each
//! block documents. "Using the API" and the walkthrough each get a fresh stack, as a reader
//! starting `make run` for either would; the two run side by side, as two checkouts' would.
//! Everything started is stopped, also on failure.
//!
//! What the test changes in the blocks, and only this: the documented ports (9000 for the API,
//! 9324 for the bucket) become the free ones, `.local/run/` becomes this run's `RUN_DIR`, and the
//! blocks run in a scratch directory (where `values.yaml` lands) with `make` pointed at the
//! checkout.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the checkout")
}

/// The ```sh blocks of README.md, by the `## ` section they are in.
fn blocks() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match &mut block {
            Some(body) if line.starts_with("```") => {
                sections
                    .entry(section.clone())
                    .or_default()
                    .push(std::mem::take(body));
                block = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None if line == "```sh" => block = Some(String::new()),
            None => {
                if let Some(title) = line.strip_prefix("## ") {
                    section = title.to_owned();
                }
            }
        }
    }
    sections
}

/// The first port of the kernel's ephemeral range, from which `bind(0)` and every outgoing
/// connection take theirs.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// `count` consecutive loopback ports, free now and below the ephemeral range. `make run`
/// binds them many seconds later (after LocalStack's start, 15-35 s): a port of the ephemeral
/// range is soon some connection's own, and on LocalStack, whose gateway opens a connection
/// per request to its DynamoDB Local, a demo agent's port was taken so ("cannot listen").
/// Below that range only an explicit bind takes a port. Ports handed to one stack are never
/// handed to the other: the two start side by side and bind theirs later.
fn free_ports(count: u16) -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let high = ephemeral_start().saturating_sub(count);
    let low = high / 2;
    loop {
        let base = low + (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
        let mut given = GIVEN.lock().unwrap();
        if (base..base + count)
            .all(|p| !given.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            given.extend(base..base + count);
            return base;
        }
    }
}

fn free_port() -> u16 {
    free_ports(1)
}

/// A running `make run` stack; dropping it stops everything it started.
struct Stack {
    run: Child,
    run_dir: PathBuf,
    scratch: PathBuf,
    api_port: u16,
    sqs_port: u16,
}

impl Stack {
    fn start(log: &Path) -> Stack {
        let repo = repo();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let base = std::env::temp_dir().join(format!("dcbackup-readme-{}", &id[..12]));
        let (run_dir, scratch) = (base.join("run"), base.join("scratch"));
        std::fs::create_dir_all(&scratch).unwrap();
        let (api_port, ddb_port, sqs_port) = (free_port(), free_port(), free_port());
        let path = format!(
            "{}:{}",
            repo.join(".tools/venv/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log_file = std::fs::File::create(log).unwrap();
        let run = Command::new("setsid")
            .arg(repo.join("tools/run-local"))
            .current_dir(&repo)
            .env("PATH", path)
            .env("RUN_DIR", &run_dir)
            .env("API_PORT", api_port.to_string())
            .env("DYNAMODB_PORT", ddb_port.to_string())
            .env("SQS_PORT", sqs_port.to_string())
            // Under `make test ENGINES=localstack` (ENGINES is inherited) each stack starts a
            // LocalStack of its own there, which also serves S3 where fauxqs would.
            .env(
                "LOCALSTACK_ENDPOINT",
                format!("http://127.0.0.1:{sqs_port}"),
            )
            .env("AGENT_BASE_PORT", free_ports(3).to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("tools/run-local starts");
        let mut stack = Stack {
            run,
            run_dir,
            scratch,
            api_port,
            sqs_port,
        };
        // Ready once the functions' settings are written and watch listens. The panic carries
        // the log's end: on CI it is all there is to read.
        let deadline = Instant::now() + Duration::from_secs(300);
        while !(stack.run_dir.join("lambda.env").exists()
            && TcpStream::connect(("127.0.0.1", api_port)).is_ok())
        {
            let exited = stack.run.try_wait().expect("make run's status");
            if exited.is_some() || Instant::now() > deadline {
                let said = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = said.lines().rev().take(30).collect();
                panic!(
                    "make run did not come up ({}); the end of {}:\n{}",
                    exited.map_or("still starting after 300 s".into(), |s| s.to_string()),
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        stack
    }

    /// Runs the blocks in one shell, in order; returns each block's output (stdout and stderr).
    fn run_blocks(&self, blocks: &[String]) -> Vec<String> {
        let repo = repo();
        let mut script = format!(
            "export RUN_DIR='{}' API_PORT={}\nmake() {{ command make --no-print-directory -C '{}' \"$@\"; }}\n",
            self.run_dir.display(),
            self.api_port,
            repo.display()
        );
        for (i, block) in blocks.iter().enumerate() {
            let block = block
                .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", self.api_port))
                .replace("127.0.0.1:9324", &format!("127.0.0.1:{}", self.sqs_port))
                .replace(".local/run/", &format!("{}/", self.run_dir.display()));
            script.push_str(&format!("echo '@@block {i}'\n{block}\n"));
        }
        let mut shell = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bash runs");
        // Read as it comes, so a timeout can say which block hung and what it printed.
        let output = Arc::new(Mutex::new(String::new()));
        let mut stdout = BufReader::new(shell.stdout.take().unwrap());
        let sink = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            while stdout.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(600);
        while shell.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = shell.kill();
                let said = output.lock().unwrap().clone();
                let last = said.rsplit("@@block ").next().unwrap_or_default();
                panic!("the README's blocks did not finish in 10 minutes; block {last}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        reader.join().expect("the blocks' output is read");
        let output = output.lock().unwrap().clone();
        output
            .split("@@block ")
            .skip(1)
            .map(|part| {
                part.split_once('\n')
                    .map_or("", |(_, rest)| rest)
                    .to_owned()
            })
            .collect()
    }
}

impl Stack {
    /// `count` GETs at once, as a user's script might fire them; the status of each, counted.
    /// cargo lambda watch alone wedges for good past ~100 queued invocations of a function
    /// (FACTS.md); the gate in front of it must queue them instead.
    fn burst(&self, count: usize) -> BTreeMap<String, usize> {
        let script = format!(
            "TOKEN=$(make --no-print-directory -s -C {repo} token) && \
             seq {count} | xargs -P {count} -I{{}} curl -s -o /dev/null -m 300 -w '%{{http_code}}\\n' \
               -H \"X-Auth-Token: $TOKEN\" http://127.0.0.1:{port}/v1.0/subclouds",
            repo = repo().display(),
            port = self.api_port,
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("RUN_DIR", &self.run_dir)
            .env("API_PORT", self.api_port.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        let mut statuses = BTreeMap::new();
        for status in String::from_utf8_lossy(&out.stdout).lines() {
            *statuses.entry(status.to_owned()).or_default() += 1;
        }
        statuses
    }

    /// `make invoke FN=<name>` for every sample in `events/`, a few at a time as a user's
    /// script might: (name, exit status, output), by name.
    fn invoke_every_sample(&self) -> Vec<(String, bool, String)> {
        let repo = repo();
        let mut names: Vec<String> = std::fs::read_dir(repo.join("events"))
            .unwrap()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".json").map(str::to_owned)
            })
            .collect();
        names.sort();
        let path = format!(
            "{}:{}",
            repo.join(".tools/venv/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let invoke = |name: String| {
            let out = Command::new("make")
                .args([
                    "--no-print-directory",
                    "-s",
                    "invoke",
                    &format!("FN={name}"),
                ])
                .current_dir(&repo)
                .env("PATH", &path)
                .env("RUN_DIR", &self.run_dir)
                .env("API_PORT", self.api_port.to_string())
                .stdin(Stdio::null())
                .output()
                .expect("make runs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (name, out.status.success(), text)
        };
        let lanes = 4;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..lanes)
                .map(|lane| {
                    let mine: Vec<String> =
                        names.iter().skip(lane).step_by(lanes).cloned().collect();
                    scope.spawn(move || mine.into_iter().map(invoke).collect::<Vec<_>>())
                })
                .collect();
            let mut all: Vec<_> = handles
                .into_iter()
                .flat_map(|h| h.join().expect("an invoke lane"))
                .collect();
            all.sort();
            all
        })
    }
}

impl Stack {
    /// `make stop` from another shell, as a user whose `make run` terminal is gone would.
    fn stop_with_make_stop(mut self) {
        let status = Command::new("make")
            .args(["--no-print-directory", "-s", "stop"])
            .current_dir(repo())
            .env("RUN_DIR", &self.run_dir)
            .stdin(Stdio::null())
            .status()
            .expect("make runs");
        assert!(status.success(), "make stop failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.run.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "make run still runs after make stop"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            TcpStream::connect(("127.0.0.1", self.api_port)).is_err(),
            "the API still answers after make stop"
        );
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // run-local stops its agents, poller, watch and engines on SIGINT (its Ctrl-C).
        let group = format!("-{}", self.run.id());
        // Either may find the group gone already (make stop ran): nothing to say then.
        let kill = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.run.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        kill("-KILL");
        let _ = self.run.wait();
        // A run-local killed before its trap finished (a loaded machine) leaves its engines,
        // agents, watch and poller, each in a session of its own: `make stop` ends them from
        // what they recorded, before their records go with the directory.
        let _ = Command::new(repo().join("tools/run-local"))
            .arg("stop")
            .current_dir(repo())
            .env("RUN_DIR", &self.run_dir)
            .stdout(Stdio::null())
            .status();
        if let Some(base) = self.run_dir.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// Checks block `i`'s output holds every expected piece.
fn check(section: &str, outputs: &[String], expected: &[&[&str]]) {
    assert_eq!(
        outputs.len(),
        expected.len(),
        "{section}: the README has {} shell blocks, the test expects {}; outputs: {outputs:#?}",
        outputs.len(),
        expected.len()
    );
    for (i, (output, wanted)) in outputs.iter().zip(expected).enumerate() {
        for piece in *wanted {
            assert!(
                output.contains(piece),
                "{section}, block {i}: {piece:?} missing from:\n{output}"
            );
        }
    }
}

fn require_cargo_lambda() {
    assert!(
        repo().join(".tools/venv/bin/cargo-lambda").exists(),
        "cargo-lambda is not installed in .tools: run the tests with `make test`"
    );
}

/// Builds every function once, in one cargo run, rather than watch building each on its
/// first call.
fn build_functions() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--locked", "--workspace", "--bins"])
        .current_dir(repo())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the functions failed");
}

#[test]
fn the_readme_blocks_do_what_they_say_against_make_run() {
    require_cargo_lambda();
    build_functions();
    let sections = blocks();
    // The target dir's own scratch: checkouts running this side by side keep their logs apart.
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));

    let api = &sections["Using the API"];
    let walkthrough = &sections["Walkthrough: a backup and a restore with curl"];
    // A panic in either section's thread fails the test when the scope joins it; each
    // stack's Drop stops what it started.
    let ((outputs, invoked, burst), walked) = std::thread::scope(|scope| {
        let api = scope.spawn(|| {
            let stack = Stack::start(&logs.join("dcbackup-readme-api.log"));
            (
                stack.run_blocks(api),
                stack.invoke_every_sample(),
                stack.burst(300),
            )
        });
        let walked = scope.spawn(|| {
            let stack = Stack::start(&logs.join("dcbackup-readme-walkthrough.log"));
            let outputs = stack.run_blocks(walkthrough);
            stack.stop_with_make_stop();
            outputs
        });
        (
            api.join().expect("the API section"),
            walked.join().expect("the walkthrough"),
        )
    });
    assert_eq!(
        burst,
        BTreeMap::from([("200".to_owned(), 300)]),
        "a burst of 300 requests is answered, every one"
    );
    // `make invoke` reaches every function with its sample, HTTP events with a token.
    assert!(invoked.len() >= 20, "{invoked:?}");
    for (name, ok, output) in &invoked {
        assert!(ok, "make invoke FN={name} failed:\n{output}");
        let http = std::fs::read_to_string(repo().join(format!("events/{name}.json")))
            .unwrap()
            .contains("\"routeKey\"");
        if http {
            assert!(output.contains("\"statusCode\":"), "{name}: {output}");
            assert!(!output.contains("\"statusCode\":401"), "{name}: {output}");
            assert!(!output.contains("\"statusCode\":5"), "{name}: {output}");
        }
    }
    let worker = &invoked.iter().find(|(n, ..)| n == "worker").unwrap().2;
    assert!(worker.contains("batchItemFailures"), "{worker}");
    check(
        "Using the API",
        &outputs,
        &[
            &[],
            &[
                "\"name\":\"subcloud5\"",
                "\"location\":\"Halifax\"",
                "\"description\":\"rack 4\"",
                "\"management-state\":\"unmanaged\"",
            ],
            &["\"subcloud_groups\"", "\"name\":\"north\"", "\"name\":\"subcloud1\""],
            &[
                "\"backup-status\":\"validating\"",
                "\"skipped\":[{\"id\":1,\"name\":\"subcloud1\",\"reason\":\"Cannot perform subcloud-backup create operation: Subcloud subcloud1 current backup_status is",
                "\"requested-by\":\"admin\"",
                // Restoring subcloud4: refused (no backup, or still busy with the delete).
                "Subcloud subcloud4",
            ],
            &["\"name\":\"subcloud2\"", "\"name\":\"subcloud3\""],
            &["\"statusCode\":200", "subclouds"],
        ],
    );

    check(
        "Walkthrough",
        &walked,
        &[
            &[],
            &[
                "\"backup-status\":\"complete-central\"",
                "\"state\":\"succeeded\"",
            ],
            &["subcloud1/24.09/", "MANIFEST.json", "etc/hosts"],
            &[
                "\"deploy-status\":\"complete\"",
                "controller-0",
                "replicas: 3",
            ],
            &[
                "\"backup-status\":\"complete-local\"",
                ".tar.gz",
                ".sha256",
                "\n0\n",
            ],
            &[],
            &["backup-prep-failed", "is unreachable"],
        ],
    );
}
