//! The sweeper, on a schedule: wiring only; the handler is `dcbackup::sweeper::Sweeper`.

fn main() -> Result<(), lambda_runtime::Error> {
    dcbackup::runtime::start(dcbackup::runtime::serve_sweeper())
}
