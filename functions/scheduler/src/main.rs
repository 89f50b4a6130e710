//! The scheduler, every minute: wiring only; the handler is `dcbackup::scheduler::Scheduler`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dcbackup::runtime::serve_scheduler().await
}
