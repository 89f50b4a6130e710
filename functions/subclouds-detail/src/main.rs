//! `GET /v1.0/subclouds/{ref}/detail`: wiring only; the handler is `dcbackup::api::handle`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dcbackup::runtime::serve_http(dcbackup::api::Route::SubcloudsDetail).await
}
