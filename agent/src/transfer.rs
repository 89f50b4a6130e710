//! Moving archives to and from pre-signed URLs, streamed (an archive is never held in memory)
//! over the HTTP/TLS stack the rest of dcbackup uses: hyper with rustls on aws-lc. `http://`
//! works too, for local S3 emulators. Nothing here logs or reports a URL's query string, which
//! carries the pre-signed credential.

use std::error::Error as _;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use futures::stream;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::archive::Written;
use crate::digest::Hashing;
use crate::progress::Meter;
use crate::protocol::TransferUrl;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole upload or download; pre-signed URLs expire well within it anyway.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);
const CHUNK_BYTES: usize = 256 * 1024;

type Body = BoxBody<Bytes, std::io::Error>;
type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    #[error("cannot set up TLS: {0}")]
    Tls(std::io::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("request failed: {}", chain(.0))]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("the server answered {0}")]
    Status(StatusCode),
    #[error("the response broke off: {0}")]
    Body(#[from] hyper::Error),
    #[error("local file: {0}")]
    Io(#[from] std::io::Error),
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
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(TransferError::Tls)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// PUTs the file at `path` (`size` bytes) to `url`; `meter` advances by the bytes sent.
    pub(crate) async fn upload(
        &self,
        url: &TransferUrl,
        path: &Path,
        size: u64,
        meter: Meter,
    ) -> Result<(), TransferError> {
        let client = self.client()?;
        let file = tokio::fs::File::open(path).await?;
        let chunks = stream::unfold(Some((file, meter)), |state| async move {
            let (mut file, mut meter) = state?;
            let mut buffer = vec![0u8; CHUNK_BYTES];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    meter.advance(n as u64);
                    Some((Ok(Frame::data(Bytes::from(buffer))), Some((file, meter))))
                }
                // Ends the stream after the error, which aborts the request.
                Err(error) => Some((Err(error), None)),
            }
        });
        // S3 refuses a chunked PUT to a pre-signed URL: the length goes in the header.
        let request = Request::put(url.uri().clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(BoxBody::new(StreamBody::new(chunks)))?;
        let response = tokio::time::timeout(TRANSFER_TIMEOUT, client.request(request))
            .await
            .map_err(|_| TransferError::Timeout(TRANSFER_TIMEOUT))??;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(TransferError::Status(status)),
        }
    }

    /// GETs `url` into a new file at `dest`, hashing it on the way; `progress` makes the meter
    /// from the announced length (0 when none is).
    pub(crate) async fn download(
        &self,
        url: &TransferUrl,
        dest: &Path,
        progress: impl FnOnce(u64) -> Meter,
    ) -> Result<Written, TransferError> {
        let client = self.client()?;
        let request = Request::get(url.uri().clone())
            .body(Empty::new().map_err(|never| match never {}).boxed())?;
        let transfer = async {
            let response = client.request(request).await?;
            if response.status() != StatusCode::OK {
                return Err(TransferError::Status(response.status()));
            }
            let announced = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut meter = progress(announced);
            let mut file = tokio::fs::File::create(dest).await?;
            let mut digest = Hashing::new(());
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    digest.update(&data);
                    file.write_all(&data).await?;
                    meter.advance(data.len() as u64);
                }
            }
            file.sync_all().await?;
            let (_, sha256, size) = digest.finish();
            Ok(Written { size, sha256 })
        };
        tokio::time::timeout(TRANSFER_TIMEOUT, transfer)
            .await
            .map_err(|_| TransferError::Timeout(TRANSFER_TIMEOUT))?
    }
}
