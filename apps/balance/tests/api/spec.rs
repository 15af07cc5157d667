//! The OpenAPI spec: generated from the code, committed, complete enough for clients.

use std::process::Command;

use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                ops.push((path.clone(), method.clone(), op));
            }
        }
    }
    ops
}

#[test]
fn the_committed_spec_is_what_the_code_generates() {
    let committed =
        std::fs::read_to_string(testkit::repo_root().join("openapi/openapi.json")).unwrap();
    assert!(
        committed == balance::http::spec(),
        "openapi/openapi.json is stale: regenerate it with `cargo run -p balance -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn balance_openapi_prints_the_spec_and_nothing_else() {
    let out = Command::new(env!("CARGO_BIN_EXE_balance"))
        .arg("openapi")
        .env_clear()
        .env("BALANCE_ENV", "production")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        balance::http::spec(),
        "and needs no configuration"
    );
}

#[tokio::test]
async fn every_operation_has_a_full_path_an_operation_id_and_problem_responses() {
    let app = crate::helpers::TestApp::spawn().await;
    // The served spec of the test app includes the test routes, so this holds for a
    // spec with operations even before the product has any.
    let served: Value = app.get("/openapi.json").await.json().await.unwrap();
    let production: Value = serde_json::from_str(&balance::http::spec()).unwrap();
    for spec in [&served, &production] {
        for (path, method, op) in operations(spec) {
            assert!(
                path.starts_with("/api/v1/"),
                "{path} lacks the /api/v1 prefix"
            );
            assert!(
                op["operationId"].as_str().is_some_and(|id| !id.is_empty()),
                "{method} {path} has no operationId"
            );
            let responses = op["responses"].as_object().unwrap();
            for status in ["400", "404", "422", "500"] {
                let problem = &responses[status]["content"]["application/problem+json"];
                assert!(
                    problem.is_object(),
                    "{method} {path} does not document {status} as a problem"
                );
            }
        }
    }
    assert!(!operations(&served).is_empty());
}

#[test]
fn test_only_routes_never_appear_in_the_production_spec() {
    assert!(!balance::http::spec().contains("/_test/"));
}

#[test]
fn every_tenant_operation_declares_its_permission() {
    let spec: Value = serde_json::from_str(&balance::http::spec()).unwrap();
    let tenant_ops: Vec<_> = operations(&spec)
        .into_iter()
        .filter(|(path, _, _)| path.starts_with("/api/v1/tenants/"))
        .collect();
    assert!(!tenant_ops.is_empty());
    for (path, method, op) in tenant_ops {
        let permission = op["x-permission"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no x-permission"));
        assert!(
            permission.parse::<access::Permission>().is_ok(),
            "{method} {path}: `{permission}` is not in the catalogue"
        );
    }
}
