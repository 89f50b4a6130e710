//! The API over real HTTP on 127.0.0.1, for clients under test (the `dcbackup` CLI): each
//! request is matched to its `Route` by method and path, as API Gateway routes it, and
//! handed to the same handler a Lambda function runs.

use dcbackup::api::{self, App, Route};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::Body;
use std::net::SocketAddr;
use std::sync::Arc;

/// A running server; it stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    scheme: &'static str,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The base URL to give a client, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The route whose template matches `path` (`Route::for_path`: one trailing slash allowed),
/// preferring the one of `method`; `None` when no route has this path.
pub fn route_for(method: &http::Method, path: &str) -> Option<Route> {
    let candidates = Route::for_path(path);
    candidates
        .iter()
        .copied()
        .find(|r| r.method() == method)
        .or_else(|| candidates.first().copied())
}

async fn answer<S>(
    state: Arc<S>,
    app: fn(&S) -> &App,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let Some(route) = route_for(&parts.method, parts.uri.path()) else {
        let body = serde_json::json!({"error": {"code": 404, "title": "Not Found",
            "message": format!("No route for {}", parts.uri.path())}});
        return Ok(hyper::Response::builder()
            .status(404)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid response"));
    };
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Binary(bytes.to_vec())
    };
    let response = api::handle(app(&state), route, http::Request::from_parts(parts, body)).await;
    let (parts, body) = response.into_parts();
    let bytes: &[u8] = body.as_ref();
    Ok(hyper::Response::from_parts(
        parts,
        Full::new(Bytes::copy_from_slice(bytes)),
    ))
}

/// Serves the `App` that `app` finds in `state` (a `Stack`, a `Lab`) on a free port of
/// 127.0.0.1 until the returned server is dropped.
pub async fn serve<S: Send + Sync + 'static>(state: Arc<S>, app: fn(&S) -> &App) -> Server {
    start(state, app, None).await
}

/// The same over HTTPS with this TLS configuration (its certificate must name 127.0.0.1).
pub async fn serve_tls<S: Send + Sync + 'static>(
    state: Arc<S>,
    app: fn(&S) -> &App,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
) -> Server {
    start(state, app, Some(tokio_rustls::TlsAcceptor::from(tls))).await
}

async fn start<S: Send + Sync + 'static>(
    state: Arc<S>,
    app: fn(&S) -> &App,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1");
    let addr = listener.local_addr().expect("the bound address");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (state, tls) = (Arc::clone(&state), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => connection(TokioIo::new(stream), state, app).await,
                    // A client that refuses the certificate only ends its own connection.
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            connection(TokioIo::new(stream), state, app).await;
                        }
                    }
                }
            });
        }
    });
    Server { addr, scheme, task }
}

async fn connection<I, S>(io: TokioIo<I>, state: Arc<S>, app: fn(&S) -> &App)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + Sync + 'static,
{
    let service = service_fn(move |req| answer(Arc::clone(&state), app, req));
    // A client that hangs up mid-request only ends its own connection.
    let _ = http1::Builder::new().serve_connection(io, service).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_path_then_method() {
        let get = http::Method::GET;
        let patch = http::Method::PATCH;
        assert_eq!(
            route_for(&get, "/v1.0/subclouds"),
            Some(Route::SubcloudsList)
        );
        assert_eq!(
            route_for(&get, "/v1.0/subclouds/"),
            Some(Route::SubcloudsList)
        );
        assert_eq!(
            route_for(&patch, "/v1.0/subclouds/dc1"),
            Some(Route::SubcloudsUpdate)
        );
        assert_eq!(
            route_for(&get, "/v1.0/subclouds/dc1/backups"),
            Some(Route::BackupsList)
        );
        assert_eq!(
            route_for(&patch, "/v1.0/subcloud-backup/delete/24.09"),
            Some(Route::BackupDelete)
        );
        // A known path with another method still reaches its route, which answers 405.
        assert_eq!(
            route_for(&get, "/v1.0/subcloud-backup/restore"),
            Some(Route::BackupRestore)
        );
        assert_eq!(route_for(&get, "/v1.0/nothing"), None);
    }
}
