//! Moving archives to and from pre-signed URLs, streamed (an archive is never held in memory)
//! over the HTTP/TLS stack the rest of dcbackup uses: hyper with rustls on aws-lc. `http://`
//! works too, for local S3 emulators. Nothing here logs or reports a URL's query string, which
//! carries the pre-signed credential.

use std::error::Error as _;
use std::io::{self, Read};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use futures::stream;
use http::header::{CONTENT_LENGTH, ETAG};
use http::{HeaderName, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use dcbackup_protocol::TransferUrl;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One part's PUT; pre-signed URLs expire well within it anyway.
const PART_TIMEOUT: Duration = Duration::from_secs(3600);
/// A download that sends nothing for this long is given up: a slow WAN link still delivers
/// something every few seconds, a dead one nothing.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const CHUNK_BYTES: usize = 256 * 1024;
/// Downloaded chunks waiting for the extraction to take them (each at most a few tens of KiB).
const DOWNLOAD_QUEUE: usize = 16;
/// `Content-MD5` (RFC 1864): S3 refuses a part whose bytes do not match it.
const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");

type Body = BoxBody<Bytes, io::Error>;
type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    #[error("cannot set up TLS: {0}")]
    Tls(io::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("request failed: {}", chain(.0))]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("the server answered {0}")]
    Status(StatusCode),
    #[error("the server answered without an ETag")]
    NoEtag,
    #[error("the response broke off: {0}")]
    Body(#[from] hyper::Error),
    #[error("local file: {0}")]
    Io(#[from] io::Error),
    #[error("gave up after {0:?}")]
    Timeout(Duration),
}

/// An error and its sources, which is where hyper says what actually went wrong.
fn chain(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The HTTP client, built on first use: reading the system's root certificates is work a
/// local-only agent never needs.
#[derive(Default)]
pub(crate) struct Transfers {
    client: OnceLock<HttpClient>,
}

impl Transfers {
    fn client(&self) -> Result<HttpClient, TransferError> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(dcbackup_protocol::tls::provider())
            .map_err(TransferError::Tls)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// PUTs one part, the file at `path` (`size` bytes), to its pre-signed UploadPart `url`
    /// with its MD5 (base64) as `Content-MD5`; `sent` is told the bytes sent so far. Returns
    /// the part's ETag.
    pub(crate) async fn upload_part(
        &self,
        url: &TransferUrl,
        path: &Path,
        size: u64,
        content_md5: &str,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<String, TransferError> {
        let client = self.client()?;
        let file = tokio::fs::File::open(path).await?;
        let chunks = stream::unfold(Some((file, 0u64, sent)), |state| async move {
            let (mut file, done, sent) = state?;
            let mut buffer = vec![0u8; CHUNK_BYTES];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    let done = done + n as u64;
                    sent(done);
                    Some((
                        Ok(Frame::data(Bytes::from(buffer))),
                        Some((file, done, sent)),
                    ))
                }
                // Ends the stream after the error, which aborts the request.
                Err(error) => Some((Err(error), None)),
            }
        });
        // S3 refuses a chunked PUT to a pre-signed URL: the length goes in the header.
        let request = Request::put(url.uri().clone())
            .header(CONTENT_LENGTH, size)
            .header(CONTENT_MD5, content_md5)
            .body(BoxBody::new(StreamBody::new(chunks)))?;
        let response = tokio::time::timeout(PART_TIMEOUT, client.request(request))
            .await
            .map_err(|_| TransferError::Timeout(PART_TIMEOUT))??;
        if !response.status().is_success() {
            return Err(TransferError::Status(response.status()));
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or(TransferError::NoEtag)?;
        // The rest of the answer (normally empty) is read so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok(etag)
    }

    /// Starts a GET of `url`: once the server has answered 200, its announced length (0 when
    /// none is) and the body, to read with [`Download::reader`].
    pub(crate) async fn download(&self, url: &TransferUrl) -> Result<Download, TransferError> {
        let client = self.client()?;
        let request = Request::get(url.uri().clone())
            .body(Empty::new().map_err(|never| match never {}).boxed())?;
        let response = tokio::time::timeout(IDLE_TIMEOUT, client.request(request))
            .await
            .map_err(|_| TransferError::Timeout(IDLE_TIMEOUT))??;
        if response.status() != StatusCode::OK {
            return Err(TransferError::Status(response.status()));
        }
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Download {
            announced,
            body: response.into_body(),
        })
    }
}

/// A download under way.
pub(crate) struct Download {
    pub(crate) announced: u64,
    body: Incoming,
}

impl Download {
    /// A blocking reader of the body, for the extraction on a blocking thread, and the task
    /// that feeds it (a few chunks ahead at most). The task ends with the download's error,
    /// if it broke off; the reader then sees an error too. Dropping the reader stops it.
    pub(crate) fn reader(
        self,
    ) -> (
        BodyReader,
        tokio::task::JoinHandle<Result<(), TransferError>>,
    ) {
        let (sender, receiver) = mpsc::channel(DOWNLOAD_QUEUE);
        let mut body = self.body;
        let feeder = tokio::spawn(async move {
            loop {
                let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                    Err(_) => Err(TransferError::Timeout(IDLE_TIMEOUT)),
                    Ok(None) => return Ok(()),
                    Ok(Some(frame)) => frame.map_err(TransferError::Body),
                };
                let data = match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => data,
                        // Trailers carry nothing of the archive.
                        Err(_) => continue,
                    },
                    Err(error) => {
                        let _ = sender.send(Err(io::Error::other(error.to_string()))).await;
                        return Err(error);
                    }
                };
                if sender.send(Ok(data)).await.is_err() {
                    // The reader stopped (the archive was refused): nothing more to fetch.
                    return Ok(());
                }
            }
        });
        (
            BodyReader {
                receiver,
                chunk: Bytes::new(),
            },
            feeder,
        )
    }
}

/// Reads a download's chunks as they arrive; blocks the (blocking) thread while it waits.
pub(crate) struct BodyReader {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.receiver.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.chunk = chunk?,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
