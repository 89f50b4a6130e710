//! The worker, on the jobs queue: wiring only; the handler is `dcbackup::worker::Worker`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dcbackup::runtime::serve_worker().await
}
