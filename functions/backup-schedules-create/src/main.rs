//! `POST /v1.0/backup-schedules`: wiring only; the handler is `dcbackup::api::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dcbackup::runtime::serve_http(dcbackup::api::Route::SchedulesCreate).await
}
