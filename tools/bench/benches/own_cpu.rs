//! P4 (issue #17): the CPU a subcloud-backup create spends on its own, without its AWS calls:
//! the token checked (HS256, or ES256 against a JWKS), the policy, the JSON body parsed into a
//! command, and the answer rendered for the one subcloud it took, through the same functions
//! `dcbackup::api::handle` calls. Floors for comparison: the signature work alone, in aws-lc.
//! `make bench` reads criterion's estimates from `$CRITERION_HOME/own_cpu/*`.

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use dcbackup::api::{self, Route};
use dcbackup::auth::{AuthConfig, Authenticator, SigningAlgorithm};
use dcbackup::domain::{OpKind, Subcloud};
use lambda_http::{Body, Request, Response};
use std::hint::black_box;
use std::time::Duration;

const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "dcbackup";
const SECRET: &str = "a bench secret of at least thirty-two bytes";
const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/src/auth/testdata"
);

fn own_cpu(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let subcloud = claimed_subcloud();
    let mut group = c.benchmark_group("own_cpu");

    let hs256 = Authenticator::new(
        AuthConfig::builder(ISSUER, AUDIENCE)
            .algorithms([SigningAlgorithm::Hs256])
            .hs256_secret(SECRET)
            .build()
            .expect("HS256 configuration"),
    )
    .expect("HS256 authenticator");
    let token = hs256
        .config()
        .mint_local_token(
            "bench",
            &["admin".into()],
            "admin",
            Duration::from_secs(3600),
        )
        .expect("an HS256 token");
    let request = create_request(&token);
    group.bench_function("create_hs256_json", |b| {
        b.iter(|| create(&runtime, &hs256, &request, &subcloud))
    });

    let es256 = Authenticator::new(
        AuthConfig::builder(ISSUER, AUDIENCE)
            .algorithms([SigningAlgorithm::Es256])
            .jwks_file(format!("{TESTDATA}/jwks.json"))
            .build()
            .expect("ES256 configuration"),
    )
    .expect("ES256 authenticator");
    let es256_token = es256_token();
    let es256_request = create_request(&es256_token);
    group.bench_function("create_es256_json", |b| {
        b.iter(|| create(&runtime, &es256, &es256_request, &subcloud))
    });

    let command = api::backup_command(OpKind::Create, &request, None).expect("a valid create");
    group.bench_function("answer_one_subcloud", |b| {
        b.iter(|| {
            api::backup_answer(&command, None, true, vec![subcloud.clone()], Vec::new())
                .expect("answered")
        })
    });

    let (signing_input, _) = token.rsplit_once('.').expect("a JWS");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    group.bench_function("floor_hmac_sha256", |b| {
        b.iter(|| aws_lc_rs::hmac::sign(&key, black_box(signing_input.as_bytes())))
    });

    let (es256_input, signature) = es256_token.rsplit_once('.').expect("a JWS");
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url");
    let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec_public_point())
        .expect("the JWKS's P-256 key");
    group.bench_function("floor_p256_verify", |b| {
        b.iter(|| {
            public
                .verify_sig(black_box(es256_input.as_bytes()), &signature)
                .expect("a valid signature")
        })
    });
    group.finish();
}

/// What the handler does for a create of one subcloud, but its AWS calls.
fn create(
    runtime: &tokio::runtime::Runtime,
    auth: &Authenticator,
    request: &Request,
    subcloud: &Subcloud,
) -> Response<Body> {
    let principal = runtime
        .block_on(api::caller(auth, Route::BackupCreate, request))
        .expect("an authorized caller");
    black_box(&principal);
    let command = api::backup_command(OpKind::Create, request, None).expect("a valid create");
    api::backup_answer(&command, None, true, vec![subcloud.clone()], Vec::new()).expect("answered")
}

fn create_request(token: &str) -> Request {
    http::Request::builder()
        .method("POST")
        .uri("/v1.0/subcloud-backup")
        .header("content-type", "application/json")
        .header("x-auth-token", token)
        .body(Body::Text(r#"{"subcloud": "subcloud1"}"#.into()))
        .expect("a valid request")
}

/// A subcloud as a create's claim leaves it.
fn claimed_subcloud() -> Subcloud {
    let in_an_hour = dcbackup::domain::epoch_now() + 3600;
    serde_json::from_value(serde_json::json!({
        "id": 1,
        "name": "subcloud1",
        "description": "Ottawa site",
        "location": "YOW",
        "software_version": "24.09",
        "management_state": "managed",
        "availability_status": "online",
        "deploy_status": "complete",
        "backup_status": "validating",
        "error_description": "No errors present",
        "region_name": "2ec93dfb654846909efe61d1b39dd2ce",
        "group_id": 1,
        "management_subnet": "192.168.101.0/24",
        "management_start_ip": "192.168.101.2",
        "management_end_ip": "192.168.101.50",
        "management_gateway_ip": "192.168.101.1",
        "systemcontroller_gateway_ip": "192.168.204.101",
        "agent_url": "https://192.168.101.2:8443",
        "created_at": "2026-11-30 09:00:00.000000",
        "updated_at": "2026-11-30 10:00:00.000000",
        "op_id": "0b1e8f0e-8a0f-4c53-9a57-5a3c1f9e2d11",
        "op_kind": "create",
        "op_since": "2026-11-30 10:00:00.000000",
        "lease_expires_at": in_an_hour,
        "fence": 1,
    }))
    .expect("a stored subcloud")
}

/// An ES256 token signed by the key whose public half is `ec-1` in the test JWKS.
fn es256_token() -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bench",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "roles": ["admin"],
        "project_name": "admin",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let pem = std::fs::read(format!("{TESTDATA}/ec_private.pem")).expect("the test EC key");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("a P-256 key");
    jsonwebtoken::encode(&header, &claims, &key).expect("an ES256 token")
}

/// The uncompressed point of `ec-1` in the test JWKS.
fn ec_public_point() -> Vec<u8> {
    let jwks: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{TESTDATA}/jwks.json")).expect("the test JWKS"),
    )
    .expect("JSON");
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == "ec-1"))
        .expect("ec-1");
    let coordinate = |name: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key[name].as_str().expect("a coordinate"))
            .expect("base64url")
    };
    [vec![4], coordinate("x"), coordinate("y")].concat()
}

criterion_group!(benches, own_cpu);
criterion_main!(benches);
