//! The real `dcbackup` binary against the real handlers over HTTP, on the local engines:
//! every command, `--wait` through real agents and the worker, `-o json|yaml` parsed back,
//! and the exit codes (1 refusal, 2 usage, 3 partial failure, 4 unreachable or auth).

mod support;

use serde_json::Value;
use support::{closed_port, Env};

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| v["name"].as_str().expect("a name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_commands_round_trip() {
    let env = Env::new().await;
    let group = env
        .run([
            "subcloud-group",
            "add",
            "--name",
            "edge-east",
            "--description",
            "East sites",
            "--max-parallel-subclouds",
            "4",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(group["name"], "edge-east");
    assert_eq!(group["max_parallel_subclouds"], 4);

    let added = env
        .run([
            "subcloud",
            "add",
            "--name",
            "dc1",
            "--software-version",
            "24.09",
            "--group",
            "edge-east",
            "--location",
            "Halifax",
            "--agent-url",
            "https://10.10.5.2:8443",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(added["name"], "dc1");
    assert_eq!(added["group_id"], group["id"]);
    assert_eq!(added["management-state"], "unmanaged");

    // Tables by default, with dcmanager's columns.
    let listed = env.run(["subcloud", "list"]).await.expect(0);
    assert!(listed.stdout.contains("dc1"), "{listed:?}");
    assert!(listed.stdout.contains("deploy status"), "{listed:?}");
    assert!(
        !listed.stdout.contains('\x1b'),
        "piped output has no escapes"
    );
    let ids = env.run(["subcloud", "list", "-q"]).await.expect(0);
    assert_eq!(ids.stdout.trim(), added["id"].to_string());
    let shown: Value = serde_yaml::from_str(
        &env.run(["subcloud", "show", "dc1", "-o", "yaml"])
            .await
            .expect(0)
            .stdout,
    )
    .expect("YAML output");
    assert_eq!(shown["location"], "Halifax");
    let table = env.run(["subcloud", "show", "dc1"]).await.expect(0);
    assert!(table.stdout.contains("Halifax") && table.stdout.contains("software-version"));

    let updated = env
        .run([
            "subcloud",
            "update",
            "dc1",
            "--description",
            "rack 4",
            "--availability-status",
            "online",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(updated["description"], "rack 4");
    let managed = env
        .run(["subcloud", "manage", "dc1", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(managed["management-state"], "managed");
    // A managed subcloud cannot be deleted: the API's refusal, one line, exit 1.
    let refused = env.run(["subcloud", "delete", "dc1"]).await.expect(1);
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:?}");
    assert!(refused.stderr.starts_with("error: "), "{refused:?}");
    let unmanaged = env
        .run(["subcloud", "unmanage", "dc1", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(unmanaged["management-state"], "unmanaged");

    let groups = env
        .run(["subcloud-group", "list", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(names(&groups["subcloud_groups"]), ["Default", "edge-east"]);
    let members = env
        .run([
            "subcloud-group",
            "list-subclouds",
            "edge-east",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(names(&members["subclouds"]), ["dc1"]);
    let renamed = env
        .run([
            "subcloud-group",
            "update",
            "edge-east",
            "--name",
            "east",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(renamed["name"], "east");
    let shown = env
        .run(["subcloud-group", "show", "east", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(shown["description"], "East sites");
    // Not empty yet.
    env.run(["subcloud-group", "delete", "east"])
        .await
        .expect(1);
    env.run(["subcloud", "delete", "dc1"]).await.expect(0);
    env.run(["subcloud-group", "delete", "east"])
        .await
        .expect(0);
    let groups = env
        .run(["subcloud-group", "list", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(names(&groups["subcloud_groups"]), ["Default"]);
    let gone = env.run(["subcloud", "show", "dc1"]).await.expect(1);
    assert!(gone.stderr.contains("not found"), "{gone:?}");

    // Nothing to change is a usage error, caught before any request.
    env.run(["subcloud", "update", "dc2"]).await.expect(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_backup_waits_to_complete_central_then_restores_and_deletes() {
    let env = Env::new().await;
    env.run(["subcloud-group", "add", "--name", "edge"])
        .await
        .expect(0);
    let _a = env.subcloud_with_agent("sc-a", "edge").await;
    let b = env.subcloud_with_agent("sc-b", "edge").await;

    let mut create = env.command([
        "subcloud-backup",
        "create",
        "--group",
        "edge",
        "--wait",
        "--poll-interval",
        "200ms",
        "-o",
        "json",
    ]);
    create.env("NO_COLOR", "1");
    let done = env.finish_with_worker(create).await.expect(0);
    let outcome = done.json();
    assert_eq!(outcome["kind"], "create");
    let rows = outcome["subclouds"].as_array().expect("rows");
    assert_eq!(names(&outcome["subclouds"]), ["sc-a", "sc-b"]);
    for row in rows {
        assert_eq!(row["result"], "succeeded", "{row}");
        assert_eq!(row["backup-status"], "complete-central", "{row}");
    }
    // Piped: one plain line per change on stderr, never an escape code.
    assert!(!done.stderr.contains('\x1b') && !done.stdout.contains('\x1b'));
    assert!(
        done.stderr.contains("sc-a: complete-central (succeeded)"),
        "{done:?}"
    );

    let op_id = rows[0]["operation"]
        .as_str()
        .expect("an operation id")
        .to_owned();
    let op = env
        .run(["operation", "show", &op_id, "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(op["state"], "succeeded");
    assert_eq!(op["subcloud"], "sc-a");
    let history = env
        .run(["operation", "list", "--subcloud", "sc-a", "-q"])
        .await
        .expect(0);
    assert_eq!(history.stdout.trim(), op_id);
    let backups = env
        .run(["backup", "list", "--subcloud", "sc-a", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(backups["backups"][0]["location"], "central");
    assert_eq!(backups["backups"][0]["operation"], op_id.as_str());

    let status = env.run(["status", "-o", "json"]).await.expect(0).json();
    let edge = status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "edge")
        .expect("the edge group")
        .clone();
    assert_eq!(edge["subclouds"], 2);
    assert_eq!(edge["backed-up"], 2);
    assert_eq!(edge["failed"], serde_json::json!([]));
    let table = env.run(["status", "--group", "edge"]).await.expect(0);
    assert!(table.stdout.contains("backed up < 24h"), "{table:?}");

    // Restore sc-b from that backup, after damaging it.
    let original = dcbackup_tests::lab::tree(&b.data);
    std::fs::write(b.data.join("platform.conf"), "broken\n").unwrap();
    env.run(["subcloud", "unmanage", "sc-b"]).await.expect(0);
    let values = env.lab.dir.join("restore.yaml");
    std::fs::write(&values, "bootstrap_address:\n  sc-b: 127.0.0.1\n").unwrap();
    let restore = env.command([
        "subcloud-backup",
        "restore",
        "--subcloud",
        "sc-b",
        "--restore-values",
        values.to_str().unwrap(),
        "--wait",
        "--poll-interval",
        "200ms",
        "-o",
        "json",
    ]);
    let restored = env.finish_with_worker(restore).await.expect(0).json();
    assert_eq!(restored["subclouds"][0]["deploy-status"], "complete");
    assert_eq!(dcbackup_tests::lab::tree(&b.data), original);
    env.run(["subcloud", "manage", "sc-b"]).await.expect(0);

    // Delete the release's backups of the group: a 204 names no operation; --wait finds them.
    let delete = env.command([
        "subcloud-backup",
        "delete",
        "24.09",
        "--group",
        "edge",
        "--wait",
        "--poll-interval",
        "200ms",
        "-o",
        "json",
    ]);
    let deleted = env.finish_with_worker(delete).await.expect(0).json();
    assert_eq!(deleted["kind"], "delete");
    assert_eq!(names(&deleted["subclouds"]), ["sc-a", "sc-b"]);
    let backups = env
        .run(["backup", "list", "--subcloud", "sc-a", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(backups["backups"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_with_wait_exits_3_and_says_why() {
    let env = Env::new().await;
    env.run(["subcloud-group", "add", "--name", "mixed"])
        .await
        .expect(0);
    let _ok = env.subcloud_with_agent("good", "mixed").await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    env.run([
        "subcloud",
        "add",
        "--name",
        "dead",
        "--software-version",
        "24.09",
        "--group",
        "mixed",
        "--management-state",
        "managed",
        "--availability-status",
        "online",
        "--agent-url",
        &dead,
    ])
    .await
    .expect(0);
    // Offline: not valid for a backup, so skipped at once.
    env.run([
        "subcloud",
        "add",
        "--name",
        "off",
        "--software-version",
        "24.09",
        "--group",
        "mixed",
    ])
    .await
    .expect(0);

    // With no worker running, --timeout ends the waiting (exit 3); the operations go on.
    let mut cmd = env.command([
        "subcloud-backup",
        "create",
        "--group",
        "mixed",
        "--wait",
        "--timeout",
        "600ms",
        "--poll-interval",
        "100ms",
    ]);
    cmd.env("NO_COLOR", "1");
    let timed_out = env.finish(cmd).await.expect(3);
    assert!(
        timed_out
            .stderr
            .contains("timed out after 600ms with 2 subcloud(s) still running"),
        "{timed_out:?}"
    );
    assert!(
        timed_out.stderr.contains("off: not started"),
        "{timed_out:?}"
    );
    // A busy subcloud is the API's refusal: 409, exit 1, its reason shown.
    let busy = env
        .run(["subcloud-backup", "create", "--subcloud", "good"])
        .await
        .expect(1);
    assert!(busy.stderr.contains("HTTP 409"), "{busy:?}");
    for name in ["good", "dead"] {
        env.lab.run_to_end(name).await;
    }
    // Without --wait an accepted request exits 0: the ids, the skipped one on stderr.
    let accepted = env
        .run(["subcloud-backup", "create", "--group", "mixed", "-q"])
        .await
        .expect(0);
    assert_eq!(
        accepted.stdout.lines().count(),
        2,
        "two operation ids: {accepted:?}"
    );
    assert!(accepted.stderr.contains("off: not started"), "{accepted:?}");
    for name in ["good", "dead"] {
        env.lab.run_to_end(name).await;
    }

    let cmd = env.command([
        "subcloud-backup",
        "create",
        "--group",
        "mixed",
        "--wait",
        "--poll-interval",
        "200ms",
    ]);
    let run = env.finish_with_worker(cmd).await.expect(3);
    let table = &run.stdout;
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {run:?}"))
            .to_owned()
    };
    assert!(line("good").contains("succeeded"), "{run:?}");
    assert!(
        line("dead").contains("failed") && line("dead").contains("backup-prep-failed"),
        "{run:?}"
    );
    assert!(
        line("dead").contains("unreachable"),
        "the error-description: {run:?}"
    );
    assert!(line("off").contains("skipped"), "{run:?}");
    assert!(
        run.stderr.contains("2 of 3 subcloud(s) did not succeed"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_usage_auth_and_an_unreachable_api_have_their_exit_codes() {
    let env = Env::new().await;
    let missing = env
        .run(["subcloud-backup", "create", "--subcloud", "nowhere"])
        .await
        .expect(1);
    assert_eq!(
        missing.stderr.trim(),
        "error: Subcloud not found (HTTP 404)"
    );
    let empty = env
        .run([
            "subcloud-backup",
            "create",
            "--group",
            "Default",
            "-o",
            "json",
        ])
        .await
        .expect(1);
    assert!(
        empty.stdout.is_empty(),
        "nothing on stdout on error: {empty:?}"
    );

    // Usage: clap's errors, and local files that cannot be read.
    env.run(["subcloud-backup", "create"]).await.expect(2);
    env.run([
        "subcloud-backup",
        "create",
        "--subcloud",
        "a",
        "--group",
        "b",
    ])
    .await
    .expect(2);
    env.run([
        "subcloud-backup",
        "create",
        "--subcloud",
        "a",
        "--backup-values",
        "/nonexistent.yaml",
    ])
    .await
    .expect(2);
    env.run(["subcloud", "list", "-o", "xml"]).await.expect(2);

    // A refused token: exit 4, and the token never printed.
    let mut bad = env.command(["subcloud", "list"]);
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXRoYXQtaXMtd3Jvbmc";
    bad.env("DCBACKUP_TOKEN", forged);
    let denied = env.finish(bad).await.expect(4);
    assert!(denied.stderr.contains("HTTP 401"), "{denied:?}");
    assert!(!denied.stderr.contains(forged) && !denied.stdout.contains(forged));
    let mut none = env.command(["subcloud", "list"]);
    none.env_remove("DCBACKUP_TOKEN");
    let anonymous = env.finish(none).await.expect(4);
    assert!(
        anonymous.stderr.contains("give a token with --token"),
        "{anonymous:?}"
    );
    // A reader may look but not back up: 403 is an auth failure too.
    let reader = dcbackup_tests::token(&["reader"], "admin");
    let mut look = env.command(["subcloud", "list", "--token", &reader]);
    look.env_remove("DCBACKUP_TOKEN");
    env.finish(look).await.expect(0);
    let mut act = env.command(["subcloud-backup", "create", "--group", "Default"]);
    act.env("DCBACKUP_TOKEN", &reader);
    let forbidden = env.finish(act).await.expect(4);
    assert!(forbidden.stderr.contains("HTTP 403"), "{forbidden:?}");
    assert!(!forbidden.stderr.contains(&reader));

    // Nothing listening: unreachable, exit 4, naming where it tried.
    let url = format!("http://127.0.0.1:{}", closed_port());
    let mut cmd = env.command(["subcloud-backup", "create", "--group", "Default", "--wait"]);
    cmd.env("DCBACKUP_URL", &url);
    let unreachable = env.finish(cmd).await.expect(4);
    assert!(
        unreachable
            .stderr
            .contains(&format!("cannot reach the dcbackup API at {url}")),
        "{unreachable:?}"
    );
    // No URL at all: a configuration error.
    let mut cmd = env.command(["subcloud", "list"]);
    cmd.env_remove("DCBACKUP_URL");
    let unset = env.finish(cmd).await.expect(2);
    assert!(unset.stderr.contains("no API URL"), "{unset:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_token_sources_and_ca_bundles() {
    let env = Env::new().await;
    let dir = env.config_home.join("dcbackup");
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = env.lab.dir.join("lab.token");
    std::fs::write(&token_file, format!("{}\n", env.lab.stack.admin_token)).unwrap();
    let unreachable = format!("http://127.0.0.1:{}", closed_port());
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "default-profile = \"lab\"\n\
             [profiles.lab]\nurl = \"{}\"\ntoken-file = \"{}\"\n\
             [profiles.elsewhere]\nurl = \"{unreachable}\"\ntoken = \"x\"\n\
             [profiles.pinned]\nurl = \"{}\"\nca-bundle = \"{}\"\n",
            env.server.url(),
            token_file.display(),
            env.server.url(),
            env.lab.dir.join("no-such-ca.pem").display(),
        ),
    )
    .unwrap();
    let bare = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env_remove("DCBACKUP_URL").env_remove("DCBACKUP_TOKEN");
        cmd
    };
    // The default profile: URL and token file from the XDG config file.
    env.finish(bare(&["subcloud-group", "list", "-q"]))
        .await
        .expect(0);
    // --profile picks another; the flag's URL beats the profile's.
    env.finish(bare(&["subcloud-group", "list", "--profile", "elsewhere"]))
        .await
        .expect(4);
    let mut cmd = bare(&["subcloud-group", "list", "--profile", "elsewhere", "--url"]);
    cmd.arg(env.server.url())
        .env("OS_AUTH_TOKEN", &env.lab.stack.admin_token);
    env.finish(cmd).await.expect(0);
    let unknown = env
        .finish(bare(&["subcloud", "list", "--profile", "nope"]))
        .await
        .expect(2);
    assert!(
        unknown.stderr.contains("no profile named \"nope\""),
        "{unknown:?}"
    );
    // A CA bundle that cannot be read is a configuration error, before any request.
    let pinned = env
        .finish(bare(&["subcloud", "list", "--profile", "pinned"]))
        .await
        .expect(2);
    assert!(pinned.stderr.contains("CA bundle"), "{pinned:?}");
    let not_pem = env.lab.dir.join("not-pem.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let mut cmd = bare(&["subcloud", "list", "--ca-bundle"]);
    cmd.arg(&not_pem);
    env.finish(cmd).await.expect(2);
    // An unreadable token file is named, never its content.
    let mut cmd = bare(&["subcloud", "list", "--token-file", "/nonexistent/token"]);
    cmd.env("DCBACKUP_URL", env.server.url());
    env.finish(cmd).await.expect(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_for_bash_zsh_and_fish() {
    let env = Env::new().await;
    for shell in ["bash", "zsh", "fish"] {
        let script = env.run(["completion", shell]).await.expect(0);
        assert!(
            script.stdout.contains("subcloud-backup"),
            "{shell}: {script:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_the_api_trusts_the_ca_bundle() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;

    let env = Env::new().await;
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let tls = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let server = dcbackup_tests::server::serve_tls(
        std::sync::Arc::clone(&env.lab),
        |lab: &dcbackup_tests::lab::Lab| &lab.stack.app,
        std::sync::Arc::new(tls),
    )
    .await;
    let bundle = env.lab.dir.join("ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();

    let mut trusted = env.command(["subcloud-group", "list", "-q", "--ca-bundle"]);
    trusted.arg(&bundle).env("DCBACKUP_URL", server.url());
    let listed = env.finish(trusted).await.expect(0);
    assert_eq!(listed.stdout.trim(), "1", "the Default group: {listed:?}");
    // The system's store does not know this CA: the certificate is refused, exit 4.
    let mut untrusted = env.command(["subcloud-group", "list"]);
    untrusted.env("DCBACKUP_URL", server.url());
    let refused = env.finish(untrusted).await.expect(4);
    assert!(refused.stderr.contains("certificate"), "{refused:?}");
    // Through a profile too.
    std::fs::create_dir_all(env.config_home.join("dcbackup")).unwrap();
    std::fs::write(
        env.config_home.join("dcbackup/config.toml"),
        format!(
            "[profiles.default]\nurl = \"{}\"\nca-bundle = \"{}\"\n",
            server.url(),
            bundle.display()
        ),
    )
    .unwrap();
    let mut profiled = env.command(["subcloud-group", "list", "-q"]);
    profiled.env_remove("DCBACKUP_URL");
    env.finish(profiled).await.expect(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_commands_create_list_fire_update_and_delete() {
    let env = Env::new().await;
    env.run(["subcloud-group", "add", "--name", "edge-east"])
        .await
        .expect(0);
    env.run([
        "subcloud",
        "add",
        "--name",
        "dc1",
        "--software-version",
        "24.09",
        "--group",
        "edge-east",
    ])
    .await
    .expect(0);
    let values = env.lab.dir.join("schedule-values.yaml");
    std::fs::write(&values, "wipe_ceph_osds: false\n").expect("values file");
    let created = env
        .run([
            "schedule",
            "create",
            "--name",
            "nightly",
            "--group",
            "edge-east",
            "--cron",
            "0 2 * * *",
            "--timezone",
            "Europe/Berlin",
            "--retain",
            "3",
            "--start-window",
            "30",
            "--backup-values",
            values.to_str().expect("a UTF-8 path"),
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(created["name"], "nightly");
    assert_eq!(created["cron"], "0 2 * * *");
    assert_eq!(created["timezone"], "Europe/Berlin");
    assert_eq!(created["retain"], 3);
    assert_eq!(created["start_window"], 30);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["backup_values"]["wipe_ceph_osds"], false);
    assert!(created["next-run"].is_string(), "{created}");
    assert!(created["group_id"].is_u64(), "{created}");

    // The table names the target group; -q prints the id.
    let listed = env.run(["schedule", "list"]).await.expect(0);
    assert!(
        listed.stdout.contains("nightly") && listed.stdout.contains("group edge-east"),
        "{listed:?}"
    );
    let ids = env.run(["schedule", "list", "-q"]).await.expect(0);
    assert_eq!(ids.stdout.trim(), created["id"].to_string());

    // Reached two days late (by the scheduler's clock): outside its 30-minute window, missed.
    let now = dcbackup::domain::epoch_now();
    env.lab
        .stack
        .scheduler()
        .run_at(now + 2 * 86_400)
        .await
        .expect("a scheduler run");
    let table = env.run(["schedule", "show", "nightly"]).await.expect(0);
    assert!(
        table.stdout.contains("missed ") && table.stdout.contains("(due "),
        "{table:?}"
    );
    // Without a window it fires: the member is unmanaged, so skipped, and `show` says why.
    env.run(["schedule", "update", "nightly", "--start-window", "0"])
        .await
        .expect(0);
    env.lab
        .stack
        .scheduler()
        .run_at(now + 4 * 86_400)
        .await
        .expect("a scheduler run");
    let shown: Value = serde_yaml::from_str(
        &env.run(["schedule", "show", "nightly", "-o", "yaml"])
            .await
            .expect(0)
            .stdout,
    )
    .expect("YAML output");
    assert_eq!(shown["last-run"]["state"], "fired", "{shown}");
    assert_eq!(shown["last-run"]["skipped"][0]["name"], "dc1", "{shown}");
    let table = env.run(["schedule", "show", "nightly"]).await.expect(0);
    assert!(
        table.stdout.contains("fired ") && table.stdout.contains("0 started, 1 skipped"),
        "{table:?}"
    );
    assert!(
        table.stdout.contains("skipped subcloud") && table.stdout.contains("managed"),
        "{table:?}"
    );

    let updated = env
        .run([
            "schedule",
            "update",
            "nightly",
            "--enabled",
            "false",
            "--subcloud",
            "dc1",
            "--cron",
            "@hourly",
            "-o",
            "json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["cron"], "@hourly");
    assert!(updated["next-run"].is_null(), "disabled: {updated}");
    assert!(updated["group_id"].is_null() && updated["subcloud_id"].is_u64());
    let listed = env.run(["schedule", "list"]).await.expect(0);
    assert!(listed.stdout.contains("subcloud dc1"), "{listed:?}");

    // The API's 400 names the field: exit 1, one line.
    let bad = env
        .run([
            "schedule",
            "update",
            "nightly",
            "--timezone",
            "Mars/Olympus",
        ])
        .await
        .expect(1);
    assert!(bad.stderr.contains("timezone"), "{bad:?}");
    let bad = env
        .run([
            "schedule",
            "create",
            "--name",
            "x",
            "--group",
            "edge-east",
            "--cron",
            "61 * * * *",
        ])
        .await
        .expect(1);
    assert!(bad.stderr.contains("cron"), "{bad:?}");
    // Usage errors, before any request: nothing to update; both targets; no target.
    env.run(["schedule", "update", "nightly"]).await.expect(2);
    env.run([
        "schedule",
        "update",
        "nightly",
        "--group",
        "edge-east",
        "--subcloud",
        "dc1",
    ])
    .await
    .expect(2);
    env.run(["schedule", "create", "--name", "y", "--cron", "@daily"])
        .await
        .expect(2);

    let deleted = env
        .run(["schedule", "delete", "nightly", "-q"])
        .await
        .expect(0);
    assert_eq!(deleted.stdout.trim(), created["id"].to_string());
    let gone = env.run(["schedule", "show", "nightly"]).await.expect(1);
    assert!(gone.stderr.contains("HTTP 404"), "{gone:?}");
    let listed = env
        .run(["schedule", "list", "-o", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(listed["backup_schedules"], serde_json::json!([]));
}
