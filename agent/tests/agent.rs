//! The agent end to end over HTTP on 127.0.0.1: the real binary (startup line, logs), auth,
//! input checks, local and central round trips, duplicate and concurrent requests, and the
//! archives a restore must refuse without touching the data dirs.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{
    call, craft, craft_archive, find_named, scribble, send, sha256, token, Crafted, ObjectServer,
    TestAgent, TestDir,
};
use dcbackup_protocol::mint_worker_token;
use dcbackup_protocol::{JobKind, JobState, Location};
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use uuid::Uuid;

fn backup(op_id: Uuid, upload: Option<Value>) -> Value {
    json!({"op_id": op_id, "release": "24.09", "upload": upload})
}

fn restore(op_id: Uuid, download_url: Option<String>, sha256: Option<String>) -> Value {
    json!({"op_id": op_id, "release": "24.09", "download_url": download_url, "sha256": sha256})
}

#[tokio::test]
async fn the_binary_announces_its_address_and_logs_no_secrets() {
    let dir = TestDir::new("binary");
    let data = dir.path().join("data/etc");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::write(data.join("hosts"), "127.0.0.1 localhost\n").expect("file");
    std::fs::write(dir.path().join("secret"), common::SECRET).expect("secret");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dcbackup-agent"))
        .args(["--name", common::NAME, "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg(format!(
            "--secret-file={}",
            dir.path().join("secret").display()
        ))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("agent starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).await.expect("first line");
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_owned();

    let (status, _, health) = call(Method::GET, &format!("{url}/v1/health"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        health,
        json!({"name": common::NAME, "version": env!("CARGO_PKG_VERSION")})
    );

    let objects = ObjectServer::start().await;
    let op_id = Uuid::new_v4();
    let presigned = objects.upload("subcloud1/24.09/backup.tar.gz", 1);
    let token = token();
    let (status, _, _) = call(
        Method::POST,
        &format!("{url}/v1/backups"),
        Some(&token),
        Some(backup(op_id, Some(presigned))),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, job) = call(
            Method::GET,
            &format!("{url}/v1/jobs/{op_id}"),
            Some(&token),
            None,
        )
        .await;
        if job["state"] != "running" {
            assert_eq!(job["state"], "succeeded", "{job}");
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(objects.object("subcloud1/24.09/backup.tar.gz").is_some());

    child.start_kill().expect("stop the agent");
    child.wait().await.expect("exit");
    let mut logs = String::new();
    stdout.read_to_string(&mut logs).await.expect("logs");
    for line in logs.lines() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(entry["fields"]["message"].is_string(), "{line}");
    }
    assert!(logs.contains(&op_id.to_string()), "jobs log their op_id");
    assert!(logs.contains("job succeeded"));
    let secret = String::from_utf8_lossy(common::SECRET);
    for hidden in [secret.as_ref(), token.as_str(), "not-to-be-logged"] {
        assert!(!logs.contains(hidden), "logs show {hidden:?}");
    }
}

#[tokio::test]
async fn the_binary_explains_a_bad_command_line() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dcbackup-agent"))
        .args(["--name", "sc1", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--data is required"), "{stderr}");
    assert!(stderr.contains("usage: dcbackup-agent"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn bad_tokens_get_401() {
    let agent = TestAgent::start().await;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = |overrides: Value| {
        let mut claims = json!({"iss": "dcbackup-worker", "aud": common::NAME, "sub": "w",
                                "iat": now, "exp": now + 300});
        for (key, value) in overrides.as_object().expect("object") {
            claims[key] = value.clone();
        }
        claims
    };
    let sign = |alg: Algorithm, claims: &Value, secret: &[u8]| {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
            .expect("signed")
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let other_secret = b"another secret that is long enough".as_slice();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not a JWT", Some("hello".to_owned())),
        (
            "wrong aud",
            Some(
                mint_worker_token(common::SECRET, "subcloud2", Duration::from_secs(60)).expect("t"),
            ),
        ),
        (
            "wrong secret",
            Some(
                mint_worker_token(other_secret, common::NAME, Duration::from_secs(60)).expect("t"),
            ),
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims(json!({})))
            )),
        ),
        (
            "HS384",
            Some(sign(Algorithm::HS384, &claims(json!({})), common::SECRET)),
        ),
        (
            "expired",
            Some(sign(
                Algorithm::HS256,
                &claims(json!({"iat": now - 400, "exp": now - 100})),
                common::SECRET,
            )),
        ),
        (
            "lives an hour",
            Some(sign(
                Algorithm::HS256,
                &claims(json!({"exp": now + 3600})),
                common::SECRET,
            )),
        ),
        (
            "wrong iss",
            Some(sign(
                Algorithm::HS256,
                &claims(json!({"iss": "someone"})),
                common::SECRET,
            )),
        ),
    ];
    let body = backup(Uuid::new_v4(), None);
    for (name, token) in cases {
        for (method, path) in [(Method::POST, "/v1/backups"), (Method::GET, "/v1/nowhere")] {
            let (status, headers, error) = call(
                method,
                &format!("{}{path}", agent.url),
                token.as_deref(),
                Some(body.clone()),
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} {path}");
            assert_eq!(headers["www-authenticate"], "Bearer", "{name}");
            assert!(error["error"].is_string(), "{name}: {error}");
        }
    }
    let (status, _) = agent
        .call(Method::GET, &format!("/v1/jobs/{}", Uuid::new_v4()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a good token passes");
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let agent = TestAgent::start().await;
    let op_id = Uuid::new_v4();
    let cases = [
        (
            "/v1/backups",
            "{not json".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        (
            "/v1/backups",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        (
            "/v1/backups",
            json!({"release": "24.09"}).to_string(),
            StatusCode::BAD_REQUEST,
            "missing field `op_id`",
        ),
        (
            "/v1/backups",
            json!({"op_id": "x", "release": "24.09"}).to_string(),
            StatusCode::BAD_REQUEST,
            "UUID",
        ),
        (
            "/v1/backups",
            json!({"op_id": op_id, "release": "../etc"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid release",
        ),
        (
            "/v1/backups",
            json!({"op_id": op_id, "release": "24.09", "upload": {"part_size": 5 << 20,
                   "parts": [{"part_number": 1, "url": "file:///etc/passwd"}]}})
            .to_string(),
            StatusCode::BAD_REQUEST,
            "invalid transfer URL",
        ),
        (
            "/v1/backups",
            json!({"op_id": op_id, "release": "24.09", "upload": {"part_size": 1024, "parts": []}})
                .to_string(),
            StatusCode::BAD_REQUEST,
            "outside S3's part sizes",
        ),
        (
            "/v1/backups",
            json!({"op_id": op_id, "release": "24.09", "local_only": true}).to_string(),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "/v1/restores",
            json!({"op_id": op_id, "release": "24.09", "sha256": "abc"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid sha256",
        ),
        (
            "/v1/backups",
            "x".repeat(100_000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over",
        ),
    ];
    for (path, body, expected, message) in cases {
        let (status, _, error) = send(
            Method::POST,
            &format!("{}{path}", agent.url),
            Some(&token()),
            body.into_bytes(),
        )
        .await;
        assert_eq!(status, expected, "{message}: {error}");
        let text = error["error"].as_str().expect("error message");
        assert!(text.contains(message), "{message}: {text}");
    }
    let others = [
        (Method::GET, "/v1/jobs/not-a-uuid", StatusCode::BAD_REQUEST),
        (Method::DELETE, "/v1/backups/..", StatusCode::BAD_REQUEST),
        (Method::GET, "/v1/backups", StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, "/v1/health", StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/v2/anything", StatusCode::NOT_FOUND),
    ];
    for (method, path, expected) in others {
        let (status, error) = agent.call(method, path, None).await;
        assert_eq!(status, expected, "{path}: {error}");
        assert!(error["error"].is_string(), "{path}: {error}");
    }
    // Nothing above started a job.
    let (status, _) = agent
        .call(Method::GET, &format!("/v1/jobs/{op_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn local_backup_then_restore_is_byte_identical() {
    let agent = TestAgent::start().await;
    let original = agent.data();

    let op_id = Uuid::new_v4();
    let (status, started) = agent
        .call(Method::POST, "/v1/backups", Some(backup(op_id, None)))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["kind"], "backup");
    assert_eq!(started["op_id"], op_id.to_string());
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.progress, 100);
    let result = job.result.expect("result");
    assert_eq!(result.location, Location::Local);
    assert_eq!(result.release.as_str(), "24.09");
    let kept = agent.store.join(format!("backups/24.09/{op_id}.tar.gz"));
    let archive = std::fs::read(&kept).expect("local backup");
    assert_eq!(
        (archive.len() as u64, sha256(&archive)),
        (result.size, result.sha256.to_string())
    );
    let digest_file =
        std::fs::read_to_string(agent.store.join(format!("backups/24.09/{op_id}.sha256")))
            .expect("digest file");
    assert_eq!(digest_file, format!("{}  {op_id}.tar.gz\n", result.sha256));

    scribble(&agent);
    assert_ne!(agent.data(), original);
    let restore_id = Uuid::new_v4();
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(restore_id, None, Some(result.sha256.to_string()))),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = agent.wait(&restore_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.kind, JobKind::Restore);
    assert_eq!(job.result.expect("result").location, Location::Local);
    assert_eq!(agent.data(), original);
    agent.assert_tidy();

    // A second backup of the release replaces the first; the local copy is what restores.
    let second = Uuid::new_v4();
    agent
        .call(Method::POST, "/v1/backups", Some(backup(second, None)))
        .await;
    assert_eq!(
        agent.wait(&second.to_string()).await.state,
        JobState::Succeeded
    );
    let mut names: Vec<_> = std::fs::read_dir(agent.store.join("backups/24.09"))
        .expect("backups")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [format!("{second}.sha256"), format!("{second}.tar.gz")]
    );
}

#[tokio::test]
async fn central_backup_then_restore_is_byte_identical() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    let original = agent.data();
    let key = "subcloud1/24.09/central.tar.gz";

    let op_id = Uuid::new_v4();
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/backups",
            Some(backup(op_id, Some(objects.upload(key, 1)))),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let result = job.result.expect("result");
    assert_eq!(result.location, Location::Central);
    let uploaded = objects.object(key).expect("uploaded");
    assert_eq!(
        (uploaded.len() as u64, sha256(&uploaded)),
        (result.size, result.sha256.to_string())
    );
    let put = objects.puts.lock().expect("puts")[0].clone();
    assert_eq!(put.path, format!("/bucket/{key}"));
    assert_eq!(put.part_number, Some(1), "one part");
    assert_eq!(put.content_length, Some(result.size));
    assert!(put.content_md5.is_some(), "the part's MD5, for S3 to check");
    assert!(!put.chunked, "S3 refuses chunked pre-signed PUTs");
    assert_eq!(result.parts.len(), 1, "{:?}", result.parts);
    assert!(
        !agent.store.join("backups/24.09").exists(),
        "a central backup keeps no copy"
    );

    scribble(&agent);
    let restore_id = Uuid::new_v4();
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(
                restore_id,
                Some(objects.presigned(key)),
                Some(result.sha256.to_string()),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = agent.wait(&restore_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let restored = job.result.expect("result");
    assert_eq!(
        (restored.location, restored.sha256),
        (Location::Central, result.sha256)
    );
    assert_eq!(agent.data(), original);
    agent.assert_tidy();
}

#[tokio::test]
async fn duplicates_return_the_job_and_a_busy_agent_refuses_others() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    objects
        .gate
        .forget_permits(tokio::sync::Semaphore::MAX_PERMITS);
    let op_id = Uuid::new_v4();

    let first = backup(op_id, Some(objects.upload("held.tar.gz", 1)));
    let (status, started) = agent.call(Method::POST, "/v1/backups", Some(first)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A redelivery, with a freshly signed URL: the same job, not a second one.
    let again = backup(op_id, Some(objects.upload("held.tar.gz", 2)));
    let (status, same) = agent.call(Method::POST, "/v1/backups", Some(again)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (same["op_id"].clone(), same["kind"].clone()),
        (started["op_id"].clone(), started["kind"].clone())
    );

    let (status, error) = agent
        .call(Method::POST, "/v1/backups", Some(backup(op_id, None)))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "same op_id, other request: {error}"
    );
    let (status, error) = agent
        .call(
            Method::POST,
            "/v1/backups",
            Some(backup(Uuid::new_v4(), None)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        error["error"]
            .as_str()
            .expect("message")
            .contains(&op_id.to_string()),
        "{error}"
    );
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(Uuid::new_v4(), None, None)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = agent.call(Method::DELETE, "/v1/backups/24.09", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, running) = agent
        .call(Method::GET, &format!("/v1/jobs/{op_id}"), None)
        .await;
    assert_eq!(running["state"], "running");

    objects.gate.add_permits(1);
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(objects.puts.lock().expect("puts").len(), 1, "one upload");
    let (status, finished) = agent
        .call(
            Method::POST,
            "/v1/backups",
            Some(backup(op_id, Some(objects.upload("held.tar.gz", 1)))),
        )
        .await;
    assert_eq!(
        (status, finished["state"].clone()),
        (StatusCode::OK, json!("succeeded"))
    );
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/backups",
            Some(backup(Uuid::new_v4(), None)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "free again");
}

/// Restores `archive` served centrally and expects it refused with `message`, data untouched.
async fn refused(
    agent: &TestAgent,
    objects: &ObjectServer,
    archive: Vec<u8>,
    sha: Option<String>,
    message: &str,
) {
    let before = agent.data();
    let key = format!("{}.tar.gz", Uuid::new_v4());
    objects.put_object(&key, archive);
    let op_id = Uuid::new_v4();
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(op_id, Some(objects.presigned(&key)), sha)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Failed, "{message}");
    let error = job.error.expect("error");
    assert!(error.contains(message), "expected {message:?} in {error:?}");
    assert!(job.result.is_none());
    assert_eq!(agent.data(), before, "{message}: data dirs untouched");
    agent.assert_tidy();
}

#[tokio::test]
async fn corrupted_archives_are_refused_before_any_data_dir_changes() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    let op_id = Uuid::new_v4();
    agent
        .call(
            Method::POST,
            "/v1/backups",
            Some(backup(op_id, Some(objects.upload("good.tar.gz", 1)))),
        )
        .await;
    let result = agent
        .wait(&op_id.to_string())
        .await
        .result
        .expect("backed up");
    let good = objects.object("good.tar.gz").expect("uploaded");
    scribble(&agent);

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let digest = Some(result.sha256.to_string());
    refused(
        &agent,
        &objects,
        flipped.clone(),
        digest.clone(),
        "archive digest mismatch",
    )
    .await;
    // Without a digest to compare, decompression, the tar reader or the manifest catch it.
    refused(&agent, &objects, flipped, None, "archive").await;
    let truncated = good[..good.len() - 100].to_vec();
    refused(&agent, &objects, truncated, None, "unreadable").await;
    refused(
        &agent,
        &objects,
        b"not an archive".to_vec(),
        None,
        "unreadable",
    )
    .await;
}

fn manifest(files: Value) -> Value {
    json!({"format": 1, "subcloud": "subcloud1", "release": "24.09", "created_at": 0,
           "roots": ["etc", "opt"], "dirs": ["etc", "opt"], "files": files, "symlinks": []})
}

#[tokio::test]
async fn archives_that_differ_from_their_manifest_are_refused() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    let listed = |content: &[u8]| json!([{"path": "etc/a", "size": content.len(), "sha256": sha256(content)}]);
    let dirs: [(&str, Option<&[u8]>); 2] = [("etc", None), ("opt", None)];

    let content_differs = craft_archive(
        &[dirs[0], dirs[1], ("etc/a", Some(b"evil"))],
        &manifest(listed(b"good")),
    );
    refused(
        &agent,
        &objects,
        content_differs,
        None,
        "does not match its manifest at \"etc/a\"",
    )
    .await;
    let unlisted = craft_archive(
        &[
            dirs[0],
            dirs[1],
            ("etc/a", Some(b"good")),
            ("etc/extra", Some(b"x")),
        ],
        &manifest(listed(b"good")),
    );
    refused(
        &agent,
        &objects,
        unlisted,
        None,
        "in the archive but not listed",
    )
    .await;
    let missing = craft_archive(&dirs, &manifest(listed(b"good")));
    refused(
        &agent,
        &objects,
        missing,
        None,
        "listed but not in the archive",
    )
    .await;
    let other_release = {
        let mut m = manifest(json!([]));
        m["release"] = json!("22.12");
        craft_archive(&dirs, &m)
    };
    refused(
        &agent,
        &objects,
        other_release,
        None,
        "release 22.12, not 24.09",
    )
    .await;

    // The well-formed version of the same archive restores.
    let good = craft_archive(
        &[dirs[0], dirs[1], ("etc/a", Some(b"good"))],
        &manifest(listed(b"good")),
    );
    let key = "crafted-good.tar.gz";
    objects.put_object(key, good);
    let op_id = Uuid::new_v4();
    agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(op_id, Some(objects.presigned(key)), None)),
        )
        .await;
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(
        std::fs::read(agent.etc.join("a")).expect("restored"),
        b"good"
    );
    assert_eq!(std::fs::read_dir(&agent.opt).expect("opt").count(), 0);
}

/// Each crafted path is refused, and its canary — a name unique to this test — is found
/// nowhere: not where the path would land (the staging area is `store/work/<op>.staging`, so
/// `../x` lands in `store/work`), not anywhere else under the agent's directory, not in /tmp.
#[tokio::test]
async fn entries_escaping_the_data_dirs_are_refused() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    let canary = format!("escaped-{}", Uuid::new_v4());
    let dirs = [("etc", Crafted::Dir), ("opt", Crafted::Dir)];
    for (path, message) in [
        (format!("../{canary}"), "unsafe entry path"),
        (format!("../../{canary}"), "unsafe entry path"),
        (format!("etc/../../{canary}"), "unsafe entry path"),
        (format!("/tmp/{canary}"), "unsafe entry path"),
        (format!("var/{canary}"), "outside the data dirs"),
    ] {
        let listed = json!([{"path": path, "size": 1, "sha256": sha256(b"x")}]);
        let archive = craft(
            &[dirs[0], dirs[1], (&path, Crafted::File(b"x"))],
            &manifest(listed),
        );
        refused(&agent, &objects, archive, None, message).await;
        assert_eq!(
            find_named(agent.dir.path(), &canary),
            Vec::<std::path::PathBuf>::new(),
            "{path}"
        );
        assert!(
            !std::path::Path::new("/tmp").join(&canary).exists(),
            "{path}"
        );
    }
}

/// A crafted archive's entries, its manifest's files, and why it is refused.
type LinkCase<'a> = (Vec<(&'a str, Crafted<'a>)>, Value, &'a str);

/// Links in a crafted archive cannot carry a write outside the data dirs: not a data dir
/// that is itself a symlink, not a symlink inside one, not a hard link to a file elsewhere.
#[tokio::test]
async fn crafted_links_cannot_write_outside_the_data_dirs() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    let outside = agent.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    let victim = outside.join("victim");
    std::fs::write(&victim, b"untouched").expect("victim");
    let outside_str = outside.to_str().expect("utf-8");
    let victim_str = victim.to_str().expect("utf-8");
    let listed = |path: &str| json!([{"path": path, "size": 1, "sha256": sha256(b"x")}]);
    let cases: Vec<LinkCase> = vec![
        (
            // The data dir itself arrives as a symlink to elsewhere.
            vec![
                ("etc", Crafted::Symlink(outside_str)),
                ("opt", Crafted::Dir),
                ("etc/planted", Crafted::File(b"x")),
            ],
            listed("etc/planted"),
            "lies under \"etc\", which is not a directory",
        ),
        (
            vec![
                ("etc", Crafted::Dir),
                ("opt", Crafted::Dir),
                ("etc/up", Crafted::Symlink("../../outside")),
                ("etc/up/planted", Crafted::File(b"x")),
            ],
            listed("etc/up/planted"),
            "lies under \"etc/up\", which is not a directory",
        ),
        (
            vec![
                ("etc", Crafted::Dir),
                ("opt", Crafted::Dir),
                ("etc/abs", Crafted::Symlink(outside_str)),
                ("etc/abs/victim", Crafted::File(b"x")),
            ],
            listed("etc/abs/victim"),
            "which is not a directory",
        ),
        (
            vec![
                ("etc", Crafted::Dir),
                ("opt", Crafted::Dir),
                ("etc/hard", Crafted::HardLink(victim_str)),
            ],
            json!([]),
            "Link entry, which a backup never holds",
        ),
        (
            vec![
                ("etc", Crafted::Dir),
                ("opt", Crafted::Dir),
                ("etc/hard", Crafted::HardLink("../../outside/victim")),
                ("etc/hard", Crafted::File(b"x")),
            ],
            listed("etc/hard"),
            "Link entry, which a backup never holds",
        ),
    ];
    for (entries, files, message) in cases {
        let archive = craft(&entries, &manifest(files));
        refused(&agent, &objects, archive, None, message).await;
        let planted = find_named(agent.dir.path(), "planted");
        assert_eq!(planted, Vec::<std::path::PathBuf>::new(), "{message}");
        assert_eq!(
            std::fs::read(&victim).expect("victim"),
            b"untouched",
            "{message}"
        );
        let links =
            std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&victim).expect("victim"));
        assert_eq!(links, 1, "{message}: no hard link to the victim");
        assert_eq!(
            std::fs::read_dir(&outside).expect("outside").count(),
            1,
            "{message}"
        );
    }
}

#[tokio::test]
async fn local_backups_can_be_deleted() {
    let agent = TestAgent::start().await;
    let op_id = Uuid::new_v4();
    agent
        .call(Method::POST, "/v1/backups", Some(backup(op_id, None)))
        .await;
    assert_eq!(
        agent.wait(&op_id.to_string()).await.state,
        JobState::Succeeded
    );
    assert!(agent.store.join("backups/24.09").exists());

    for _ in 0..2 {
        let (status, body) = agent.call(Method::DELETE, "/v1/backups/24.09", None).await;
        assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    }
    assert!(!agent.store.join("backups/24.09").exists());
    let restore_id = Uuid::new_v4();
    agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(restore_id, None, None)),
        )
        .await;
    let job = agent.wait(&restore_id.to_string()).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("no local backup of release 24.09")
    );
}

#[tokio::test]
async fn a_failed_download_fails_the_job() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    let before = agent.data();
    let op_id = Uuid::new_v4();
    agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(op_id, Some(objects.presigned("absent")), None)),
        )
        .await;
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.expect("error");
    assert!(error.contains("answered 404"), "{error}");
    assert!(
        !error.contains("not-to-be-logged"),
        "the signature stays secret: {error}"
    );
    assert_eq!(agent.data(), before);
    agent.assert_tidy();
}

/// The SHA-256 of a file, read in chunks (these files are too large to read whole).
fn file_sha256(path: &std::path::Path) -> String {
    use std::io::Read;
    let mut file = std::fs::File::open(path).expect("open");
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).expect("read");
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    let digest = context.finish();
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Disk space a file takes, in KiB (what `du` reports).
fn allocated_kib(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("metadata").blocks() / 2
}

#[tokio::test]
async fn sparse_files_are_archived_and_restored_with_their_holes() {
    use std::io::{Seek, SeekFrom, Write};
    let agent = TestAgent::start().await;
    // `truncate -s 1G`: nothing but a hole.
    let empty = agent.etc.join("disk.img");
    std::fs::File::create(&empty)
        .expect("create")
        .set_len(1 << 30)
        .expect("truncate");
    // 64 MiB with data every 4 MiB (more segments than a tar header holds) and a hole at
    // the end.
    let patchy = agent.opt.join("patchy.img");
    let mut file = std::fs::File::create(&patchy).expect("create");
    for k in 0..12u64 {
        file.seek(SeekFrom::Start(k * (4 << 20) + 123))
            .expect("seek");
        file.write_all(format!("segment {k}\n").repeat(700).as_bytes())
            .expect("write");
    }
    file.set_len(64 << 20).expect("length");
    drop(file);
    let before = [
        (file_sha256(&empty), 1u64 << 30),
        (file_sha256(&patchy), 64 << 20),
    ];
    assert_eq!(allocated_kib(&empty), 0, "the filesystem keeps holes");
    let patchy_kib = allocated_kib(&patchy);

    let op_id = Uuid::new_v4();
    agent
        .call(Method::POST, "/v1/backups", Some(backup(op_id, None)))
        .await;
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let size = job.result.expect("result").size;
    assert!(
        size < 1 << 20,
        "the holes are not in the archive: {size} bytes"
    );

    std::fs::remove_file(&empty).expect("remove");
    std::fs::write(&patchy, "overwritten").expect("overwrite");
    let restore_id = Uuid::new_v4();
    agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(restore_id, None, None)),
        )
        .await;
    let job = agent.wait(&restore_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let after = [
        (
            file_sha256(&empty),
            std::fs::metadata(&empty).expect("restored").len(),
        ),
        (
            file_sha256(&patchy),
            std::fs::metadata(&patchy).expect("restored").len(),
        ),
    ];
    assert_eq!(after, before, "contents and sizes restored");
    assert_eq!(allocated_kib(&empty), 0, "the 1 GiB hole is still a hole");
    assert!(
        allocated_kib(&patchy) <= patchy_kib,
        "{} KiB allocated after the restore, {patchy_kib} KiB before",
        allocated_kib(&patchy)
    );
}

/// The sizes of the regular files under `dir`: what a backup of it archives.
fn file_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("a data dir")
        .map(|entry| {
            let entry = entry.expect("a dir entry");
            let kind = entry.file_type().expect("its type");
            if kind.is_dir() {
                file_bytes(&entry.path())
            } else if kind.is_file() {
                entry.metadata().expect("its metadata").len()
            } else {
                0
            }
        })
        .sum()
}

#[tokio::test]
async fn a_running_backup_reports_its_bytes() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    // The upload is held open once its body is sent, so the job is seen running after it.
    objects
        .gate
        .forget_permits(tokio::sync::Semaphore::MAX_PERMITS);
    let op_id = Uuid::new_v4();
    let key = "bytes.tar.gz";
    let (status, started) = agent
        .call(
            Method::POST,
            "/v1/backups",
            Some(backup(op_id, Some(objects.upload(key, 1)))),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(started["bytes"]["uploaded"], 0, "{started}");
    let data = file_bytes(&agent.etc) + file_bytes(&agent.opt);
    assert!(data > 0);

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let running = loop {
        let (_, job) = agent
            .call(Method::GET, &format!("/v1/jobs/{op_id}"), None)
            .await;
        assert_eq!(job["state"], "running", "{job}");
        let bytes = &job["bytes"];
        if bytes["archive"].as_u64() > Some(0) && bytes["uploaded"] == bytes["archive"] {
            break job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never finished sending: {job}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(running["bytes"]["total"].as_u64(), Some(data), "{running}");
    assert_eq!(running["bytes"]["archived"], running["bytes"]["total"]);

    objects.gate.add_permits(1);
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let result = job.result.expect("result");
    assert_eq!(
        (job.bytes.total, job.bytes.archived),
        (data, data),
        "{:?}",
        job.bytes
    );
    assert_eq!(
        (job.bytes.archive, job.bytes.uploaded),
        (result.size, result.size)
    );
}

/// `bytes` of data no compressor shrinks (xorshift64), so the archive is as large.
fn incompressible(bytes: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
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

#[tokio::test]
async fn a_large_backup_goes_up_in_parts_as_urls_arrive_and_restores_byte_identical() {
    let agent = TestAgent::start().await;
    let objects = ObjectServer::start().await;
    // 16 MiB of data: four parts of 5 MiB (the last one shorter).
    std::fs::write(agent.etc.join("large.bin"), incompressible(16 << 20)).expect("large file");
    let original = agent.data();
    let key = "subcloud1/24.09/large.tar.gz";
    let op_id = Uuid::new_v4();
    // URLs for the first two parts only: the agent must wait for the others.
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/backups",
            Some(backup(op_id, Some(objects.upload(key, 2)))),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let waiting = loop {
        let (_, job) = agent
            .call(Method::GET, &format!("/v1/jobs/{op_id}"), None)
            .await;
        assert_eq!(job["state"], "running", "{job}");
        if job["upload"]["waiting_for_url"] == true {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "never waited: {job}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        waiting["upload"],
        json!({"part_size": 5 << 20, "parts_uploaded": 2, "urls_through": 0, "waiting_for_url": true}),
        "{waiting}"
    );
    assert_eq!(waiting["bytes"]["uploaded"], 10 << 20, "{waiting}");

    // A job that is not a central backup takes no URLs; an unknown one is a 404.
    let parts =
        json!({"parts": [objects.part(key, 3), objects.part(key, 4), objects.part(key, 5)]});
    let (status, _) = agent
        .call(
            Method::POST,
            &format!("/v1/jobs/{}/parts", Uuid::new_v4()),
            Some(parts.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, handed) = agent
        .call(
            Method::POST,
            &format!("/v1/jobs/{op_id}/parts"),
            Some(parts),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{handed}");

    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    let result = job.result.expect("result");
    let uploaded = objects.object(key).expect("uploaded");
    assert_eq!(
        (uploaded.len() as u64, sha256(&uploaded)),
        (result.size, result.sha256.to_string())
    );
    let sizes: Vec<u64> = result.parts.iter().map(|p| p.size).collect();
    assert_eq!(sizes.len(), 4, "{sizes:?}");
    assert!(sizes[..3].iter().all(|s| *s == 5 << 20), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<u64>(), result.size);
    let puts = objects.puts.lock().expect("puts").clone();
    assert_eq!(
        puts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3), Some(4)],
        "each part once, in order"
    );
    // The stand-in, like S3, refuses a part whose Content-MD5 does not match its bytes.
    assert!(puts.iter().all(|p| p.content_md5.is_some()), "{puts:?}");
    let etags: Vec<&str> = result.parts.iter().map(|p| p.etag.as_str()).collect();
    assert!(etags.iter().all(|e| e.starts_with('"')), "{etags:?}");
    let (status, late) = agent
        .call(
            Method::POST,
            &format!("/v1/jobs/{op_id}/parts"),
            Some(json!({"parts": [objects.part(key, 6)]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a late URL changes nothing: {late}");
    agent.assert_tidy();

    scribble(&agent);
    let restore_id = Uuid::new_v4();
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/restores",
            Some(restore(
                restore_id,
                Some(objects.presigned(key)),
                Some(result.sha256.to_string()),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = agent.wait(&restore_id.to_string()).await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(agent.data(), original);
    agent.assert_tidy();
}

#[tokio::test]
async fn a_part_that_cannot_go_up_fails_the_backup_naming_it() {
    let agent = TestAgent::start().await;
    // Nothing listens where part 1's URL points: every try is refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let op_id = Uuid::new_v4();
    let upload = json!({"part_size": 5 << 20, "parts": [
        {"part_number": 1, "url": format!("http://{closed}/b/k?partNumber=1&X-Amz-Signature=not-to-be-logged")}
    ]});
    let (status, _) = agent
        .call(
            Method::POST,
            "/v1/backups",
            Some(backup(op_id, Some(upload))),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = agent.wait(&op_id.to_string()).await;
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.expect("error");
    assert!(error.starts_with("upload of part 1 failed: "), "{error}");
    assert!(!error.contains("not-to-be-logged"), "{error}");
    agent.assert_tidy();
}
