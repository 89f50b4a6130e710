//! `DELETE /v1.0/subclouds/{ref}`: wiring only; the handler is `dcbackup::api::handle`.

use dcbackup::api::Route;

fn main() -> Result<(), lambda_http::Error> {
    dcbackup::runtime::start(dcbackup::runtime::serve_http(Route::SubcloudsDelete))
}
