//! Operations endpoints at the root: `/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kernel::Problem;
use poem::{
    IntoResponse, Response, handler,
    http::{StatusCode, header},
    web::{Data, Json},
};
use sha2::{Digest, Sha256};

use super::AppState;

/// The process is alive.
#[handler]
pub fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The database is reachable and every migration is applied; `503` with the reason otherwise.
#[handler]
pub async fn ready(state: Data<&Arc<AppState>>) -> Response {
    match kernel::migrate::readiness(&state.pool).await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(reason) => Problem::unavailable("not_ready", reason).into_response(),
    }
}

/// Prometheus metrics (OpenMetrics text): the HTTP server's, the process's, and the job
/// queues' computed from the database at scrape time.
#[handler]
pub async fn metrics(state: Data<&Arc<AppState>>) -> Response {
    let mut text = state.metrics.render();
    let db = kernel::Db::new(state.pool.clone());
    match tokio::time::timeout(
        std::time::Duration::from_secs(3),
        jobs::queue_stats(&db, &state.queues),
    )
    .await
    {
        Ok(Ok(stats)) => {
            let body = text.strip_suffix("# EOF\n").unwrap_or(&text).to_string();
            text = format!("{body}{}# EOF\n", jobs_metrics(&stats));
        }
        Ok(Err(_)) | Err(_) => {
            tracing::warn!("job queue metrics unavailable: the database did not answer")
        }
    }
    Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}

fn jobs_metrics(stats: &[jobs::QueueStats]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP balance_jobs_queued Jobs waiting to run, by queue."
    );
    let _ = writeln!(out, "# TYPE balance_jobs_queued gauge");
    for s in stats {
        let _ = writeln!(
            out,
            "balance_jobs_queued{{queue=\"{}\"}} {}",
            s.queue, s.queued
        );
    }
    let _ = writeln!(
        out,
        "# HELP balance_jobs_oldest_queued_seconds How long the oldest runnable job has waited, by queue."
    );
    let _ = writeln!(out, "# TYPE balance_jobs_oldest_queued_seconds gauge");
    for s in stats {
        let _ = writeln!(
            out,
            "balance_jobs_oldest_queued_seconds{{queue=\"{}\"}} {}",
            s.queue, s.oldest_queued_seconds
        );
    }
    let _ = writeln!(
        out,
        "# HELP balance_jobs Job runs by queue and outcome (finished jobs kept in the database)."
    );
    let _ = writeln!(out, "# TYPE balance_jobs counter");
    for s in stats {
        for (outcome, n) in [
            ("succeeded", s.succeeded),
            ("failed", s.failed),
            ("dead", s.dead),
            ("running", s.running),
        ] {
            let _ = writeln!(
                out,
                "balance_jobs_total{{queue=\"{}\",outcome=\"{outcome}\"}} {n}",
                s.queue
            );
        }
    }
    out
}

/// The OpenAPI document of this server.
#[handler]
pub fn openapi_json(state: Data<&Arc<AppState>>) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(state.spec.clone())
}

/// The interactive docs page.
#[handler]
pub fn docs(state: Data<&Arc<AppState>>) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .content_type("text/html; charset=utf-8")
        .header(header::CONTENT_SECURITY_POLICY, state.docs.csp.as_str())
        .body(state.docs.html.clone())
}

/// Scalar's API reference, loading `/openapi.json`, under a strict Content-Security-Policy
/// that allows exactly its one inline script by hash. Scalar's web fonts are turned off
/// (they would come from fonts.scalar.com); inline styles stay allowed, as Scalar sets
/// hundreds of them at run time. Checked in headless Chromium: no CSP violation.
pub struct DocsPage {
    html: String,
    csp: String,
}

impl DocsPage {
    /// Builds the page from the script that poem-openapi bundles in its Scalar page.
    pub fn new(poem_scalar_html: &str) -> DocsPage {
        const OPEN: &str = "<script charset=\"UTF-8\">";
        let script = poem_scalar_html
            .rfind(OPEN)
            .map(|start| &poem_scalar_html[start + OPEN.len()..])
            .and_then(|rest| rest.rfind("</script>").map(|end| &rest[..end]))
            .unwrap_or("");
        let hash = B64.encode(Sha256::digest(script.as_bytes()));
        let html = format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<title>Balance API</title>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n</head>\n<body>\n\
             <script id=\"api-reference\" data-url=\"/openapi.json\" \
             data-configuration='{{\"withDefaultFonts\":false}}'></script>\n{OPEN}{script}</script>\n</body>\n</html>\n"
        );
        let csp = format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
             font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        DocsPage { html, csp }
    }
}
