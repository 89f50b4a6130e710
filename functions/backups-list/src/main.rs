//! `GET /v1.0/subclouds/{ref}/backups`: wiring only; the handler is `dcbackup::api::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dcbackup::runtime::serve_http(dcbackup::api::Route::BackupsList).await
}
