//! What the agent's integration tests share: scratch directories, an agent served from the
//! library on 127.0.0.1:0, a small HTTP client, a stand-in for S3's pre-signed URLs, and a
//! digest of a directory tree to prove a restore byte-identical.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{digest, SHA256};
use base64::Engine as _;
use dcbackup_agent::{serve, Agent, Config};
use dcbackup_protocol::mint_worker_token;
use dcbackup_protocol::{JobState, JobView};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use md5::Digest as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub const SECRET: &[u8] = b"integration-test secret, 32+ bytes long";
pub const NAME: &str = "subcloud1";

/// A directory removed when dropped.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(label: &str) -> TestDir {
        let path = std::env::temp_dir().join(format!(
            "dcbackup-agent-it-{label}-{}",
            uuid::Uuid::new_v4()
        ));
        fs::create_dir_all(&path).expect("test dir");
        TestDir(path.canonicalize().expect("canonical"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An agent on 127.0.0.1:0 with data dirs `etc` and `opt` under a scratch directory.
pub struct TestAgent {
    pub dir: TestDir,
    pub url: String,
    pub etc: PathBuf,
    pub opt: PathBuf,
    pub store: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestAgent {
    pub async fn start() -> TestAgent {
        let dir = TestDir::new("agent");
        let (etc, opt, store) = (
            dir.path().join("data/etc"),
            dir.path().join("data/opt"),
            dir.path().join("store"),
        );
        populate(&etc, &opt);
        let secret_file = dir.path().join("secret");
        fs::write(&secret_file, [SECRET, b"\n"].concat()).expect("secret");
        let config = Config {
            name: NAME.to_owned(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            data: vec![etc.clone(), opt.clone()],
            store: store.clone(),
            secret_file,
            previous_secret_file: None,
            tls: None,
        };
        let agent = Arc::new(Agent::new(&config).expect("agent"));
        let listener = TcpListener::bind(config.listen).await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(serve(listener, agent));
        TestAgent {
            dir,
            url,
            etc,
            opt,
            store,
            server,
        }
    }

    /// Both data dirs, digested.
    pub fn data(&self) -> BTreeMap<String, String> {
        let mut tree = tree(&self.etc);
        tree.extend(tree_with_prefix(&self.opt, "opt"));
        tree
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, value) =
            call(method, &format!("{}{path}", self.url), Some(&token()), body).await;
        (status, value)
    }

    /// Polls the job until it ends; panics after 60 s.
    pub async fn wait(&self, op_id: &str) -> JobView {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self
                .call(Method::GET, &format!("/v1/jobs/{op_id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let view: JobView = serde_json::from_value(body).expect("job view");
            if view.state != JobState::Running {
                return view;
            }
            assert!(Instant::now() < deadline, "job {op_id} still running");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The work area is empty and no original was left beside a data dir.
    pub fn assert_tidy(&self) {
        let work: Vec<_> = fs::read_dir(self.store.join("work"))
            .expect("work")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(work.is_empty(), "work area: {work:?}");
        let mut beside: Vec<_> = fs::read_dir(self.dir.path().join("data"))
            .expect("data")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        beside.sort();
        assert_eq!(beside, ["etc", "opt"]);
    }
}

/// A tree with nested and empty directories, an empty file, a binary file, a symlink and a
/// read-only file.
fn populate(etc: &Path, opt: &Path) {
    fs::create_dir_all(etc.join("nested/deeper/deepest")).expect("dirs");
    fs::create_dir_all(etc.join("empty-dir")).expect("dirs");
    fs::create_dir_all(opt.join("app")).expect("dirs");
    fs::write(etc.join("hostname"), "subcloud1\n").expect("file");
    fs::write(etc.join("nested/empty"), "").expect("file");
    let binary: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(etc.join("nested/deeper/deepest/blob.bin"), binary).expect("file");
    fs::write(etc.join("nested/deeper/secret.key"), "k").expect("file");
    fs::set_permissions(
        etc.join("nested/deeper/secret.key"),
        fs::Permissions::from_mode(0o400),
    )
    .expect("chmod");
    std::os::unix::fs::symlink("../hostname", etc.join("nested/link")).expect("symlink");
    fs::write(opt.join("app/config.yaml"), "replicas: 3\n").expect("file");
}

/// Every path under `root` (named by its last component) with what it is: directory, file
/// (content digest and permission bits) or symlink (target).
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let name = root.file_name().expect("name").to_str().expect("utf-8");
    tree_with_prefix(root, name)
}

fn tree_with_prefix(root: &Path, prefix: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let metadata = fs::symlink_metadata(root).expect("metadata");
    let kind = if metadata.is_symlink() {
        format!("link -> {}", fs::read_link(root).expect("link").display())
    } else if metadata.is_dir() {
        for entry in fs::read_dir(root).expect("dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().into_string().expect("utf-8");
            out.extend(tree_with_prefix(&entry.path(), &format!("{prefix}/{name}")));
        }
        format!("dir {:o}", metadata.permissions().mode() & 0o7777)
    } else {
        let sha = digest(&SHA256, &fs::read(root).expect("read"));
        let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("file {hex} {:o}", metadata.permissions().mode() & 0o7777)
    };
    out.insert(prefix.to_owned(), kind);
    out
}

/// Changes the data dirs: one file rewritten, one removed, one added.
pub fn scribble(agent: &TestAgent) {
    fs::write(agent.etc.join("hostname"), "changed\n").expect("write");
    fs::remove_file(agent.opt.join("app/config.yaml")).expect("remove");
    fs::write(agent.etc.join("new-file"), "new").expect("write");
}

pub fn token() -> String {
    mint_worker_token(SECRET, NAME, Duration::from_secs(300)).expect("token")
}

/// One request; the body parsed as JSON (`Null` when empty).
pub async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let bytes = body.map_or_else(Vec::new, |b| serde_json::to_vec(&b).expect("json"));
    send(method, url, token, bytes).await
}

/// One request with a raw body.
pub async fn send(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Value) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (parts.status, parts.headers, value)
}

/// What a PUT carried besides its body.
#[derive(Debug, Clone)]
pub struct Put {
    pub path: String,
    /// UploadPart's `partNumber`.
    pub part_number: Option<u32>,
    pub content_length: Option<u64>,
    pub content_md5: Option<String>,
    pub chunked: bool,
}

/// A stand-in for pre-signed S3 URLs: PUT stores the body under the URL's path (an UploadPart,
/// with `partNumber` in the query, as that part of it), GET serves it; the signature is
/// ignored. Like S3, a part whose `Content-MD5` does not match its bytes is refused (400
/// BadDigest) and a part's ETag is its MD5. PUTs wait for `gate` permits, so a test can hold
/// an upload — and the job doing it — open.
pub struct ObjectServer {
    pub url: String,
    pub objects: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub puts: Arc<Mutex<Vec<Put>>>,
    pub gate: Arc<Semaphore>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ObjectServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ObjectServer {
    pub async fn start() -> ObjectServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let objects = Arc::new(Mutex::new(HashMap::new()));
        let puts = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
        let state = (Arc::clone(&objects), Arc::clone(&puts), Arc::clone(&gate));
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(object(state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ObjectServer {
            url,
            objects,
            puts,
            gate,
            server,
        }
    }

    /// A "pre-signed" URL for `key`.
    pub fn presigned(&self, key: &str) -> String {
        format!("{}/bucket/{key}?X-Amz-Signature=not-to-be-logged", self.url)
    }

    /// A backup request's `upload`: S3's smallest part size, with URLs for parts 1 to `parts`.
    pub fn upload(&self, key: &str, parts: u32) -> Value {
        serde_json::json!({
            "part_size": dcbackup_protocol::MIN_PART_SIZE,
            "parts": (1..=parts).map(|n| self.part(key, n)).collect::<Vec<_>>(),
        })
    }

    /// A part URL, as `{"part_number", "url"}`.
    pub fn part(&self, key: &str, number: u32) -> Value {
        serde_json::json!({
            "part_number": number,
            "url": format!(
                "{}/bucket/{key}?partNumber={number}&uploadId=u1&X-Amz-Signature=not-to-be-logged",
                self.url
            ),
        })
    }

    /// The object at `key`: as PUT whole, or its uploaded parts in order.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        stored(
            &self.objects.lock().expect("objects"),
            &format!("/bucket/{key}"),
        )
    }

    pub fn put_object(&self, key: &str, bytes: Vec<u8>) {
        self.objects
            .lock()
            .expect("objects")
            .insert(format!("/bucket/{key}"), bytes);
    }
}

/// The object at `path`: as PUT whole, or its uploaded parts in order (as if completed).
fn stored(objects: &HashMap<String, Vec<u8>>, path: &str) -> Option<Vec<u8>> {
    if let Some(whole) = objects.get(path) {
        return Some(whole.clone());
    }
    let mut parts: Vec<(u32, &Vec<u8>)> = objects
        .iter()
        .filter_map(|(k, v)| {
            let number = k.strip_prefix(&format!("{path}#part"))?.parse().ok()?;
            Some((number, v))
        })
        .collect();
    parts.sort();
    (!parts.is_empty()).then(|| parts.into_iter().flat_map(|(_, v)| v.clone()).collect())
}

type ObjectState = (
    Arc<Mutex<HashMap<String, Vec<u8>>>>,
    Arc<Mutex<Vec<Put>>>,
    Arc<Semaphore>,
);

async fn object(state: ObjectState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (objects, puts, gate) = state;
    let path = request.uri().path().to_owned();
    let respond = |status: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    match *request.method() {
        Method::PUT => {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let part_number: Option<u32> = request.uri().query().and_then(|query| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("partNumber="))
                    .and_then(|n| n.parse().ok())
            });
            let put = Put {
                path: path.clone(),
                part_number,
                content_length: header("content-length").and_then(|v| v.parse().ok()),
                content_md5: header("content-md5"),
                chunked: header("transfer-encoding").is_some(),
            };
            let body = request
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let _permit = gate.acquire().await.expect("gate");
            let md5: [u8; 16] = md5::Md5::digest(&body).into();
            let content_md5 = base64::engine::general_purpose::STANDARD.encode(md5);
            if put
                .content_md5
                .as_ref()
                .is_some_and(|sent| *sent != content_md5)
            {
                return respond(StatusCode::BAD_REQUEST, b"BadDigest".to_vec());
            }
            puts.lock().expect("puts").push(put);
            let key = match part_number {
                Some(n) => format!("{path}#part{n}"),
                None => path,
            };
            objects.lock().expect("objects").insert(key, body.to_vec());
            let mut response = respond(StatusCode::OK, Vec::new());
            let etag = format!(
                "\"{}\"",
                md5.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            response
                .headers_mut()
                .insert(http::header::ETAG, etag.parse().expect("etag"));
            response
        }
        Method::GET => match stored(&objects.lock().expect("objects"), &path) {
            Some(bytes) => respond(StatusCode::OK, bytes),
            None => respond(StatusCode::NOT_FOUND, b"NoSuchKey".to_vec()),
        },
        _ => respond(StatusCode::METHOD_NOT_ALLOWED, Vec::new()),
    }
}

/// A tar.gz built entry by entry: `(path, content)` files (`None`: a directory), then a
/// manifest. Paths are written into the header as given, even unsafe ones.
pub fn craft_archive(entries: &[(&str, Option<&[u8]>)], manifest: &Value) -> Vec<u8> {
    let entries: Vec<(&str, Crafted)> = entries
        .iter()
        .map(|(path, content)| {
            let entry = match content {
                Some(bytes) => Crafted::File(bytes),
                None => Crafted::Dir,
            };
            (*path, entry)
        })
        .collect();
    craft(&entries, manifest)
}

/// One entry of a hand-made archive.
#[derive(Clone, Copy)]
pub enum Crafted<'a> {
    Dir,
    File(&'a [u8]),
    Symlink(&'a str),
    HardLink(&'a str),
}

/// A tar.gz of exactly `entries` (names written raw, so `..` and absolute paths go in as
/// given) and `MANIFEST.json` last.
pub fn craft(entries: &[(&str, Crafted)], manifest: &Value) -> Vec<u8> {
    use flate2::write::GzEncoder;
    use tar::{EntryType, Header};

    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let manifest = serde_json::to_vec(manifest).expect("manifest");
    let all = entries.iter().copied().chain(std::iter::once((
        "MANIFEST.json",
        Crafted::File(manifest.as_slice()),
    )));
    for (path, entry) in all {
        let mut header = Header::new_gnu();
        let name = &mut header.as_gnu_mut().expect("gnu").name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_mode(0o755);
        let (kind, content, link): (EntryType, &[u8], Option<&str>) = match entry {
            Crafted::File(bytes) => (EntryType::Regular, bytes, None),
            Crafted::Dir => (EntryType::Directory, &[], None),
            Crafted::Symlink(target) => (EntryType::Symlink, &[], Some(target)),
            Crafted::HardLink(target) => (EntryType::Link, &[], Some(target)),
        };
        header.set_entry_type(kind);
        header.set_size(content.len() as u64);
        if let Some(target) = link {
            let linkname = &mut header.as_gnu_mut().expect("gnu").linkname;
            linkname[..target.len()].copy_from_slice(target.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, content).expect("entry");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

/// Every path under `dir` whose file name is `name`.
pub fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(find_named(&path, name));
        }
    }
    found
}

/// The hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
