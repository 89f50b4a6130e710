//! Test harness for the integration tests: every test gets its own stack — tables, queues
//! and bucket under a unique prefix, provisioned on the local engines that `make test`
//! starts — so tests run in parallel without seeing each other's data.

use dcbackup::api::{self, App, Route};
use dcbackup::config::Config;
use dcbackup::resources::Resources;
use dcbackup::runtime::Clients;
use http::StatusCode;
use lambda_http::{Body, Request};
use serde_json::Value;

pub struct Stack {
    pub app: App,
    pub clients: Clients,
    pub resources: Resources,
}

/// A response, decoded: the status and the JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: http::HeaderMap,
}

impl Reply {
    /// The error message of an error body.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

fn require_engines() {
    for var in [
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_S3",
    ] {
        assert!(
            std::env::var(var).is_ok_and(|v| v.starts_with("http://127.0.0.1:")),
            "{var} must point at a local engine on 127.0.0.1: run the tests with `make test`"
        );
    }
}

impl Stack {
    pub async fn new() -> Stack {
        require_engines();
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let resources = Resources::with_prefix(&prefix).expect("test prefix is valid");
        let clients = Clients::from_env().await;
        dcbackup::provision::provision(&clients, &resources)
            .await
            .expect("provisioning the test stack");
        let config = Config {
            resources: resources.clone(),
            max_body_bytes: 64 * 1024,
        };
        Stack {
            app: App::new(&clients, &config),
            clients,
            resources,
        }
    }

    /// Runs a request through the route's handler, exactly as its Lambda would.
    pub async fn request(&self, route: Route, request: Request) -> Reply {
        let response = api::handle(&self.app, route, request).await;
        let (parts, body) = response.into_parts();
        let bytes: &[u8] = body.as_ref();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes).expect("every response body is JSON")
        };
        Reply {
            status: parts.status,
            body,
            headers: parts.headers,
        }
    }

    /// Calls a route on `path` with an optional JSON body, using the route's own method.
    pub async fn call(&self, route: Route, path: &str, body: Option<Value>) -> Reply {
        self.request(route, json_request(route.method(), path, body))
            .await
    }

    /// Registers a subcloud with the given extra fields and returns its wire object.
    pub async fn register(&self, name: &str, extra: Value) -> Value {
        let mut body = serde_json::json!({ "name": name, "software-version": "24.09" });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let reply = self
            .call(Route::SubcloudsRegister, "/v1.0/subclouds", Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "register {name}: {:?}",
            reply.body
        );
        reply.body
    }

    pub async fn create_group(&self, name: &str) -> Value {
        let body = serde_json::json!({ "name": name, "description": format!("{name} sites") });
        let reply = self
            .call(Route::GroupsCreate, "/v1.0/subcloud-groups", Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "create group {name}: {:?}",
            reply.body
        );
        reply.body
    }
}

pub fn json_request(method: http::Method, path: &str, body: Option<Value>) -> Request {
    let builder = http::Request::builder().method(method).uri(path);
    match body {
        Some(v) => builder
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::Text(v.to_string())),
        None => builder.body(Body::Empty),
    }
    .expect("a valid test request")
}

/// A request with a raw body, for malformed and oversized inputs.
pub fn raw_request(method: http::Method, path: &str, body: &str) -> Request {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body.to_owned()))
        .expect("a valid test request")
}
