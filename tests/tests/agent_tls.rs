//! Reaching agents safely, end to end with real agents: HTTPS verified against a private CA
//! (wrong CA, expired certificate and wrong host name each fail the operation with an
//! error-description that says so), mutual TLS, plain HTTP only to loopback, and the agent
//! key's rotation (tokens signed with the current or the previous key are accepted).

use dcbackup::agent_client::AgentTls;
use dcbackup::api::Route;
use dcbackup_agent::TlsFiles;
use dcbackup_tests::lab::{tree, AgentSetup, Lab, LabAgent, AGENT_SECRET};
use dcbackup_tests::pki::{Ca, Issued, Validity};
use http::StatusCode;
use serde_json::{json, Value};
use std::path::Path;

async fn create(lab: &Lab, name: &str) {
    let reply = lab
        .stack
        .call(
            Route::BackupCreate,
            "/v1.0/subcloud-backup",
            Some(json!({"subcloud": name})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

/// A backup through the worker: the subcloud as it ended.
async fn backup(lab: &Lab, name: &str) -> Value {
    create(lab, name).await;
    lab.run_to_end(name).await
}

fn trusting(ca: &Ca) -> AgentTls {
    AgentTls {
        ca_file: Some(ca.cert.clone()),
        ..AgentTls::default()
    }
}

fn served_with(issued: &Issued, client_ca: Option<&Path>) -> AgentSetup {
    AgentSetup {
        tls: Some(TlsFiles {
            cert: issued.cert.clone(),
            key: issued.key.clone(),
            client_ca: client_ca.map(Path::to_owned),
        }),
        ..AgentSetup::default()
    }
}

async fn https_agent(lab: &Lab, name: &str, setup: AgentSetup) -> LabAgent {
    let agent = lab.agent_with(name, setup).await;
    assert!(agent.url.starts_with("https://"), "{}", agent.url);
    lab.register(name, &agent.url).await;
    agent
}

#[tokio::test]
async fn an_https_agent_with_a_private_ca_backs_up_and_restores() {
    let dir = Scratch::new("private-ca");
    let ca = Ca::new(&dir.0, "site-ca");
    let lab = Lab::with_worker(trusting(&ca), AGENT_SECRET).await;
    let cert = ca.server("tls1", &["127.0.0.1"], Validity::Current);
    let agent = https_agent(&lab, "tls1", served_with(&cert, None)).await;
    let original = tree(&agent.data);

    let done = backup(&lab, "tls1").await;
    assert_eq!(done["backup-status"], "complete-central", "{done}");

    std::fs::write(agent.data.join("platform.conf"), "changed\n").unwrap();
    let reply = lab
        .stack
        .call(
            Route::SubcloudsUpdate,
            "/v1.0/subclouds/tls1",
            Some(json!({"management-state": "unmanaged"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let reply = lab
        .stack
        .call(
            Route::BackupRestore,
            "/v1.0/subcloud-backup/restore",
            Some(json!({"subcloud": "tls1"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let done = lab.run_to_end("tls1").await;
    assert_eq!(done["deploy-status"], "complete", "{done}");
    assert_eq!(tree(&agent.data), original);
}

/// Each certificate problem fails the backup before it starts, saying what is wrong.
#[tokio::test]
async fn untrusted_expired_or_misnamed_certificates_fail_the_backup_clearly() {
    let dir = Scratch::new("bad-certs");
    let trusted = Ca::new(&dir.0, "trusted-ca");
    let other = Ca::new(&dir.0, "other-ca");
    let lab = Lab::with_worker(trusting(&trusted), AGENT_SECRET).await;
    let cases = [
        (
            "wrongca1",
            other.server("wrongca1", &["127.0.0.1"], Validity::Current),
            "not signed by a CA the worker trusts",
        ),
        (
            "expired1",
            trusted.server("expired1", &["127.0.0.1"], Validity::Expired),
            "has expired",
        ),
        (
            "misnamed1",
            trusted.server("misnamed1", &["agent.example.test"], Validity::Current),
            "does not name the host",
        ),
    ];
    let mut agents = Vec::new();
    for (name, cert, expected) in cases {
        agents.push(https_agent(&lab, name, served_with(&cert, None)).await);
        let done = backup(&lab, name).await;
        assert_eq!(done["backup-status"], "backup-prep-failed", "{done}");
        let why = done["error-description"]
            .as_str()
            .expect("error-description");
        assert!(
            why.starts_with("TLS with the agent at https://127.0.0.1:") && why.contains(expected),
            "{name}: {why}"
        );
    }
}

#[tokio::test]
async fn an_agent_requiring_client_certificates_refuses_a_worker_without_one() {
    let dir = Scratch::new("mtls");
    let ca = Ca::new(&dir.0, "site-ca");
    let clients = Ca::new(&dir.0, "client-ca");
    let cert = ca.server("mtls", &["127.0.0.1"], Validity::Current);
    let setup = || served_with(&cert, Some(&clients.cert));

    let without = Lab::with_worker(trusting(&ca), AGENT_SECRET).await;
    let _agent = https_agent(&without, "mtls1", setup()).await;
    let done = backup(&without, "mtls1").await;
    assert_eq!(done["backup-status"], "backup-prep-failed", "{done}");
    let why = done["error-description"]
        .as_str()
        .expect("error-description");
    assert!(why.contains("client certificate"), "{why}");

    // A client certificate from another CA is refused too.
    let stranger = ca.client("stranger");
    let wrong = AgentTls {
        client_cert: Some((stranger.cert, stranger.key)),
        ..trusting(&ca)
    };
    let wrong = Lab::with_worker(wrong, AGENT_SECRET).await;
    let _agent = https_agent(&wrong, "mtls2", setup()).await;
    let done = backup(&wrong, "mtls2").await;
    assert_eq!(done["backup-status"], "backup-prep-failed", "{done}");

    let worker_cert = clients.client("worker");
    let with = AgentTls {
        client_cert: Some((worker_cert.cert, worker_cert.key)),
        ..trusting(&ca)
    };
    let with = Lab::with_worker(with, AGENT_SECRET).await;
    let _agent = https_agent(&with, "mtls3", setup()).await;
    let done = backup(&with, "mtls3").await;
    assert_eq!(done["backup-status"], "complete-central", "{done}");
}

#[tokio::test]
async fn plain_http_is_refused_off_loopback_unless_allowed() {
    let lab = Lab::new().await;
    // A documentation address (RFC 5737): nothing is sent there, the worker refuses first.
    lab.register("far1", "http://192.0.2.10:8443").await;
    let done = backup(&lab, "far1").await;
    assert_eq!(done["backup-status"], "backup-prep-failed", "{done}");
    let why = done["error-description"]
        .as_str()
        .expect("error-description");
    assert!(
        why.contains("plain http to the agent at http://192.0.2.10:8443 is refused"),
        "{why}"
    );

    // Loopback stays allowed: the lab's agents are plain HTTP on 127.0.0.1.
    let _agent = lab.agent("near1").await;
    lab.register("near1", &_agent.url).await;
    assert_eq!(
        backup(&lab, "near1").await["backup-status"],
        "complete-central"
    );
}

/// The agent key is rotated: the agent takes the new key and keeps the old one as previous;
/// workers still on the old key and workers on the new one both get through, a stale key
/// does not.
#[tokio::test]
async fn agents_accept_the_current_and_the_previous_key() {
    const NEW: &str = "the rotated-in agent key, 32+ bytes long";
    const STALE: &str = "a key retired two rotations ago, 32+ bytes";
    for (worker_key, expected) in [
        (AGENT_SECRET, "complete-central"),
        (NEW, "complete-central"),
        (STALE, "backup-prep-failed"),
    ] {
        let lab = Lab::with_worker(AgentTls::default(), worker_key).await;
        let setup = AgentSetup {
            secret: NEW.to_owned(),
            previous_secret: Some(AGENT_SECRET.to_owned()),
            ..AgentSetup::default()
        };
        let agent = lab.agent_with("rot1", setup).await;
        lab.register("rot1", &agent.url).await;
        let done = backup(&lab, "rot1").await;
        assert_eq!(done["backup-status"], expected, "{done}");
        if expected == "backup-prep-failed" {
            let why = done["error-description"]
                .as_str()
                .expect("error-description");
            assert!(why.contains("(401): invalid token"), "{why}");
        }
    }
}

/// A scratch directory for certificates, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("dcbackup-pki-{label}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
