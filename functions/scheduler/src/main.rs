//! The scheduler, every minute: wiring only; the handler is `dcbackup::scheduler::Scheduler`.

fn main() -> Result<(), lambda_runtime::Error> {
    dcbackup::runtime::start(dcbackup::runtime::serve_scheduler())
}
