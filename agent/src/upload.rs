//! A central backup's S3 multipart upload. The archive is cut into parts as it is written:
//! each part is spooled to the work area (so memory stays small whatever the part size),
//! hashed with MD5 on the way (sent as `Content-MD5`, so S3 checks every part's bytes) and
//! handed to one uploader task, which PUTs the parts in order to the pre-signed UploadPart
//! URLs the worker hands over as the upload advances. At most three parts are on disk at once
//! (one going up, one waiting, one being written), never the whole archive.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use md5::{Digest, Md5};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use crate::agent::{Agent, JobError};
use crate::jobs::Job;
use crate::progress::Progress;
use crate::store::Scratch;
use crate::transfer::TransferError;
use dcbackup_protocol::{
    PartUrl, TransferUrl, UploadPlan, UploadProgress, UploadedPart, MAX_PARTS, MAX_PART_SIZE,
};

/// How long the uploader waits for the worker to hand over the URL of a part that is ready
/// (the worker polls every 30 s or so; a worker gone for this long is not coming back).
pub(crate) const URL_PATIENCE: Duration = Duration::from_secs(600);
/// Tries of one part before the backup fails (a WAN drops a connection now and then).
const PART_TRIES: u32 = 4;

/// The part URLs a central backup holds and how far its upload is; shared by the job's
/// view, the routes that hand URLs over and the uploader.
#[derive(Debug)]
pub(crate) struct UploadState {
    part_size: AtomicU64,
    urls: Mutex<BTreeMap<u32, TransferUrl>>,
    arrived: Notify,
    parts_uploaded: AtomicU32,
    waiting: AtomicBool,
}

impl UploadState {
    pub(crate) fn new(plan: &UploadPlan) -> UploadState {
        let state = UploadState {
            part_size: AtomicU64::new(plan.part_size),
            urls: Mutex::new(BTreeMap::new()),
            arrived: Notify::new(),
            parts_uploaded: AtomicU32::new(0),
            waiting: AtomicBool::new(false),
        };
        state.add(&plan.parts);
        state
    }

    fn urls(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, TransferUrl>> {
        self.urls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes URLs the worker handed over (a newer one for a part replaces the older); those
    /// of parts already up are dropped.
    pub(crate) fn add(&self, parts: &[PartUrl]) {
        let uploaded = self.parts_uploaded.load(Ordering::SeqCst);
        let mut urls = self.urls();
        for part in parts.iter().filter(|p| p.part_number > uploaded) {
            urls.insert(part.part_number, part.url.clone());
        }
        drop(urls);
        self.arrived.notify_waiters();
    }

    pub(crate) fn view(&self) -> UploadProgress {
        UploadProgress {
            part_size: self.part_size.load(Ordering::SeqCst),
            parts_uploaded: self.parts_uploaded.load(Ordering::SeqCst),
            urls_through: self.urls().keys().next_back().copied().unwrap_or(0),
            waiting_for_url: self.waiting.load(Ordering::SeqCst),
        }
    }

    fn part_size(&self) -> u64 {
        self.part_size.load(Ordering::SeqCst)
    }

    /// Raises the part size so that `total` bytes of data (an upper bound of the archive's
    /// size: gzip adds a little to incompressible data) fit S3's 10,000 parts.
    pub(crate) fn fit(&self, total: u64) {
        let mib = 1 << 20;
        let needed = (total + total / 100 + mib).div_ceil(u64::from(MAX_PARTS));
        let needed = needed.div_ceil(mib) * mib;
        let size = self.part_size().max(needed).min(MAX_PART_SIZE);
        self.part_size.store(size, Ordering::SeqCst);
    }

    /// The URL of part `number`, waiting up to `patience` for the worker to hand it over.
    async fn url(&self, number: u32, patience: Duration) -> Option<TransferUrl> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Made before the look, so a URL added in between still wakes it.
            let arrived = self.arrived.notified();
            if let Some(url) = self.urls().get(&number).cloned() {
                self.waiting.store(false, Ordering::SeqCst);
                return Some(url);
            }
            self.waiting.store(true, Ordering::SeqCst);
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                self.waiting.store(false, Ordering::SeqCst);
                return None;
            }
        }
    }

    /// Part `number` is up: its URL (and any older) is no longer needed.
    fn uploaded(&self, number: u32) {
        self.parts_uploaded.store(number, Ordering::SeqCst);
        self.urls().retain(|part, _| *part > number);
    }

    /// Drops the URL S3 refused (expired, say), so the part waits for a fresh one.
    fn forget(&self, number: u32, url: &TransferUrl) {
        let mut urls = self.urls();
        if urls.get(&number) == Some(url) {
            urls.remove(&number);
        }
    }
}

/// A part written to the work area, ready to go up.
#[derive(Debug)]
pub(crate) struct Part {
    number: u32,
    spool: Scratch,
    size: u64,
    md5: [u8; 16],
}

/// The archive's writer for a central backup: cuts what it is given into parts of the
/// upload's part size and sends each, once complete, to the uploader (waiting while the
/// uploader is a part behind).
pub(crate) struct PartWriter {
    agent: Arc<Agent>,
    state: Arc<UploadState>,
    op_id: Uuid,
    parts: mpsc::Sender<Part>,
    current: Option<Spooling>,
    next: u32,
}

struct Spooling {
    part: Part,
    file: File,
    md5: Md5,
}

impl PartWriter {
    pub(crate) fn new(
        agent: Arc<Agent>,
        op_id: Uuid,
        state: Arc<UploadState>,
        parts: mpsc::Sender<Part>,
    ) -> Self {
        PartWriter {
            agent,
            state,
            op_id,
            parts,
            current: None,
            next: 1,
        }
    }

    fn start(&mut self) -> io::Result<&mut Spooling> {
        if self.current.is_none() {
            if self.next > MAX_PARTS {
                return Err(io::Error::other(format!(
                    "the archive needs more than {MAX_PARTS} parts of {} bytes",
                    self.state.part_size()
                )));
            }
            let spool = self
                .agent
                .store
                .scratch(self.op_id, &format!("part-{}", self.next));
            let file = File::create(spool.path())?;
            self.current = Some(Spooling {
                part: Part {
                    number: self.next,
                    spool,
                    size: 0,
                    md5: [0; 16],
                },
                file,
                md5: Md5::new(),
            });
            self.next += 1;
        }
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no part to write to"))
    }

    /// Hands the current part to the uploader.
    fn seal(&mut self) -> io::Result<()> {
        let Some(Spooling {
            mut part,
            file,
            md5,
        }) = self.current.take()
        else {
            return Ok(());
        };
        drop(file);
        part.md5 = md5.finalize().into();
        self.parts
            .blocking_send(part)
            .map_err(|_| io::Error::other("the upload stopped"))
    }

    /// Sends the last part; returns how many parts the archive took.
    pub(crate) fn finish(mut self) -> io::Result<u32> {
        self.seal()?;
        Ok(self.next - 1)
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let part_size = self.state.part_size();
        let spooling = self.start()?;
        let room = usize::try_from(part_size - spooling.part.size).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        spooling.file.write_all(&buf[..n])?;
        spooling.md5.update(&buf[..n]);
        spooling.part.size += n as u64;
        if spooling.part.size == part_size {
            self.seal()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Uploads the parts the writer sends, in order, until it stops sending; returns them for
/// CompleteMultipartUpload.
pub(crate) async fn upload_parts(
    agent: Arc<Agent>,
    job: Arc<Job>,
    state: Arc<UploadState>,
    mut parts: mpsc::Receiver<Part>,
) -> Result<Vec<UploadedPart>, JobError> {
    let mut done = Vec::new();
    let mut uploaded_bytes = 0;
    while let Some(part) = parts.recv().await {
        let etag = upload_part(&agent, &state, &job.progress, &part, uploaded_bytes).await?;
        uploaded_bytes += part.size;
        job.progress.set_uploaded(uploaded_bytes);
        state.uploaded(part.number);
        tracing::debug!(part = part.number, size = part.size, "part uploaded");
        done.push(UploadedPart {
            part_number: part.number,
            etag,
            size: part.size,
        });
    }
    Ok(done)
}

async fn upload_part(
    agent: &Agent,
    state: &UploadState,
    progress: &Progress,
    part: &Part,
    before: u64,
) -> Result<String, JobError> {
    let content_md5 = base64::engine::general_purpose::STANDARD.encode(part.md5);
    let failed = |why: String| JobError::Part {
        number: part.number,
        why,
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let url = state.url(part.number, URL_PATIENCE).await.ok_or_else(|| {
            failed(format!(
                "no upload URL for it came from the worker within {URL_PATIENCE:?}"
            ))
        })?;
        let meter = progress.clone();
        let sent = move |bytes: u64| meter.set_uploaded(before + bytes);
        match agent
            .transfers
            .upload_part(&url, part.spool.path(), part.size, &content_md5, sent)
            .await
        {
            Ok(etag) => return Ok(etag),
            Err(error) if tries < PART_TRIES => {
                tracing::warn!(part = part.number, tries, %url, %error, "part upload failed; trying again");
                if matches!(error, TransferError::Status(s) if s == http::StatusCode::FORBIDDEN) {
                    // Most likely an expired signature: wait for the next URL the worker signs.
                    state.forget(part.number, &url);
                }
                tokio::time::sleep(Duration::from_millis(500 << tries)).await;
            }
            Err(error) => return Err(failed(format!("{url}: {error}"))),
        }
    }
}
