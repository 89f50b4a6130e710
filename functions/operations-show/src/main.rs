//! `GET /v1.0/subcloud-backup/operations/{op_id}`: wiring only; the handler is `dcbackup::api::handle`.

use dcbackup::api::Route;

fn main() -> Result<(), lambda_http::Error> {
    dcbackup::runtime::start(dcbackup::runtime::serve_http(Route::OperationsShow))
}
