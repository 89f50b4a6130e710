//! The sweeper, on a schedule: wiring only; the handler is `dcbackup::sweeper::Sweeper`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dcbackup::runtime::serve_sweeper().await
}
