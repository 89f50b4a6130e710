//! `PATCH /v1.0/subcloud-backup/delete/{release_version}`: wiring only; the handler is `dcbackup::api::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dcbackup::runtime::serve_http(dcbackup::api::Route::BackupDelete).await
}
