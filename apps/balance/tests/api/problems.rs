//! Every error leaves as an RFC 9457 problem with a stable code and the request id.

use futures_util::stream;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, parts};

#[tokio::test]
async fn an_unknown_route_answers_a_404_problem_with_the_request_id() {
    let app = TestApp::spawn().await;
    for path in ["/nope", "/api/v1/nope", "/api/v2/tenants", "/api"] {
        let body = assert_problem(app.get(path).await, 404, "not_found").await;
        assert_eq!(body["instance"], path);
    }
}

#[tokio::test]
async fn a_valid_incoming_request_id_is_echoed_and_anything_else_replaced() {
    let app = TestApp::spawn().await;
    let cases = [
        ("abc-123", true),
        ("0197f1c2-7e1a-7000-8000-000000000000", true),
        ("trace:span.1_x", true),
        ("has space", false),
        ("<script>", false),
        (&"x".repeat(129), false),
    ];
    for (incoming, echoed) in cases {
        let resp = app
            .client
            .get(app.url("/nope"))
            .header("x-request-id", incoming)
            .send()
            .await
            .unwrap();
        let header = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = assert_problem(resp, 404, "not_found").await;
        assert_eq!(header == incoming, echoed, "{incoming}");
        assert_eq!(body["request_id"], header);
        if !echoed {
            assert!(
                uuid::Uuid::parse_str(&header).is_ok(),
                "a fresh id is a UUID: {header}"
            );
        }
    }
    let ok = app.get("/health").await;
    assert!(
        ok.headers().contains_key("x-request-id"),
        "successes carry one too"
    );
}

#[tokio::test]
async fn a_known_path_with_another_method_answers_405_naming_the_methods_it_allows() {
    let app = TestApp::spawn().await;
    let tenant = format!("/api/v1/tenants/{}", uuid::Uuid::now_v7());
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/api/v1/_test/echo", "POST"),
        (
            reqwest::Method::PUT,
            tenant.as_str(),
            "DELETE, GET, HEAD, PATCH",
        ),
        (reqwest::Method::POST, "/health", "GET, HEAD"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
        assert_problem(resp, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn a_body_over_one_mib_is_refused_with_413_before_routing() {
    let app = TestApp::spawn().await;
    let big = vec![b' '; 1024 * 1024 + 1];
    for path in ["/api/v1/_test/echo", "/api/v1/unknown", "/health"] {
        // Declared too large.
        let resp = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        let body = assert_problem(resp, 413, "payload_too_large").await;
        assert!(body["detail"].as_str().unwrap().contains("1048576"));

        // Not declared (chunked): caught while reading.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        let resp = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 413, "payload_too_large").await;
    }
    // At the limit is fine (and then it is simply not JSON).
    let resp = app
        .client
        .post(app.url("/api/v1/_test/echo"))
        .header("content-type", "application/json")
        .body(vec![b' '; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "malformed_json").await;
}

#[tokio::test]
async fn a_body_of_another_media_type_answers_415() {
    let app = TestApp::spawn().await;
    let valid = r#"{"name":"a","lines":[]}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/xml"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = app.client.post(app.url("/api/v1/_test/echo")).body(valid);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        assert_problem(req.send().await.unwrap(), 415, "unsupported_media_type").await;
    }
    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let resp = app
            .client
            .post(app.url("/api/v1/_test/echo"))
            .header("content-type", content_type)
            .body(valid)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{content_type}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_400() {
    let app = TestApp::spawn().await;
    for body in ["", "{", "not json", r#"{"name": "a",}"#, "\u{feff}{}"] {
        let resp = app
            .client
            .post(app.url("/api/v1/_test/echo"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400, "malformed_json").await;
    }
}

#[tokio::test]
async fn invalid_fields_answer_422_naming_each_field_by_its_path() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"lines": []}), vec!["name"]),
        (json!({"name": 5, "lines": []}), vec!["name"]),
        (
            json!({"name": "a", "lines": [{"label": "x", "amount": "12"}]}),
            vec!["lines[0].amount"],
        ),
        (
            json!({"name": "a", "lines": [{"label": "x", "amount": 1}, {"amount": 1}]}),
            vec!["lines[1].label"],
        ),
        (
            json!({"name": "a", "lines": [], "extra": true}),
            vec!["extra"],
        ),
        (
            json!({"name": "a", "lines": [{"label": "x", "amount": 1.5}]}),
            vec!["lines[0].amount"],
        ),
        (
            json!({"name": "a", "lines": [{"label": "x", "amount": 9_223_372_036_854_775_808u64}]}),
            vec!["lines[0].amount"],
        ),
        (json!(["a", []]), vec!["body"]),
        (json!("a string"), vec!["body"]),
        // Rules beyond the shape report every broken one at once.
        (
            json!({"name": " ", "lines": [{"label": "x", "amount": 0}, {"label": "y", "amount": 0}]}),
            vec!["name", "lines[0].amount", "lines[1].amount"],
        ),
        (json!({"name": "é".repeat(101), "lines": []}), vec!["name"]),
    ];
    for (body, fields) in cases {
        let problem = assert_problem(
            app.post_json("/api/v1/_test/echo", &body).await,
            422,
            "validation_failed",
        )
        .await;
        let got: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(got, fields, "{body}");
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| !e["message"].as_str().unwrap().is_empty())
        );
    }
    let ok = app
        .post_json(
            "/api/v1/_test/echo",
            &json!({"name": "ok", "lines": [{"label": "a", "amount": -250}]}),
        )
        .await;
    let (status, _, body) = parts(ok).await;
    assert_eq!(
        (status.as_u16(), body),
        (200, json!({"name": "ok", "total": -250}))
    );
}

#[tokio::test]
async fn a_bad_query_parameter_answers_422_and_a_bad_path_id_404() {
    let app = TestApp::spawn().await;
    let problem = assert_problem(
        app.get("/api/v1/_test/slow?ms=soon").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "ms");
    assert_problem(
        app.get("/api/v1/_test/items/not-a-uuid").await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/_test/items/{}", uuid::Uuid::now_v7()))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_panic_answers_a_500_problem_that_reveals_nothing() {
    let app = TestApp::spawn().await;
    let resp = app.get("/api/v1/_test/panic").await;
    let body = assert_problem(resp, 500, "internal_error").await;
    let text = body.to_string();
    for secret in ["hunter2", "db.rs", "/srv", "panick"] {
        assert!(!text.contains(secret), "{text}");
    }
    // The server keeps serving.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    for path in ["/health", "/nope", "/docs", "/api/v1/_test/items/x"] {
        let resp = app.get(path).await;
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(h.contains_key("content-security-policy"), "{path}");
        assert!(
            !h.contains_key("strict-transport-security"),
            "no HSTS over a plain-http public URL"
        );
    }
    let https = TestApp::spawn_with(&[("BALANCE_PUBLIC_URL", "https://balance.example.com")]).await;
    let resp = https.get("/health").await;
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = TestApp::spawn_with(&[("BALANCE_CORS_ORIGINS", "https://app.example.com")]).await;
    let allowed = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/_test/echo"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let other = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));

    let none = TestApp::spawn().await;
    let resp = none
        .client
        .get(none.url("/health"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        !resp.headers().contains_key("access-control-allow-origin"),
        "no origins configured: no CORS"
    );
}
