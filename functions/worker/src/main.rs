//! The worker, on the jobs queue: wiring only; the handler is `dcbackup::worker::Worker`.

fn main() -> Result<(), lambda_runtime::Error> {
    dcbackup::runtime::start(dcbackup::runtime::serve_worker())
}
