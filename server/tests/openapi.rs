//! The committed OpenAPI document is the one the code generates, and the
//! server serves it. Regenerate with
//! `cargo run -p biopay-server -- openapi > docs/openapi.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[test]
fn docs_openapi_json_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .expect("docs/openapi.json");
    let generated = biopay_server::api::openapi_document();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: run `cargo run -p biopay-server -- openapi > docs/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    for path in [
        "/v1/registrations/challenge",
        "/v1/registrations",
        "/v1/payments/challenge",
        "/v1/payments/verify",
        "/v1/credentials/{id}/deregister",
        "/v1/credentials",
        "/v1/admin/credentials/{id}/suspend",
        "/v1/admin/models/{model}/status",
        "/v1/admin/audit/checkpoints",
        "/healthz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the document"
        );
    }
}
