//! The HTTP API's `$default` route: wiring only; the handler is `dcbackup::api::default_route`.

fn main() -> Result<(), lambda_http::Error> {
    dcbackup::runtime::start(dcbackup::runtime::serve_default_route())
}
