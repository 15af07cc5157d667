//! The edge every request passes through, outermost first: request id and context, one
//! log line, metrics and a span; the body limit before routing; every error rendered as
//! a problem; security headers.

use std::{sync::Arc, time::Instant};

use futures_util::StreamExt;
use kernel::{Problem, RequestContext};
use opentelemetry::trace::TraceContextExt;
use poem::{
    Body, Endpoint, EndpointExt, IntoResponse, PathPattern, Request, Response,
    error::MethodNotAllowedError,
    http::{HeaderValue, Method, header},
};
use poem_openapi::OperationId;
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{config::HttpConfig, metrics::Metrics};

/// JSON bodies: 1 MiB (API.md).
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;
/// `POST /tenants/{id}/imports`: 50 MiB, streamed.
pub const IMPORT_BODY_LIMIT: usize = 50 * 1024 * 1024;

/// The largest body a request to `path` may carry.
pub fn body_limit_for(method: &Method, path: &str) -> usize {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let is_import = method == Method::POST
        && matches!(
            segments.as_slice(),
            ["", "api", "v1", "tenants", _, "imports"]
        );
    if is_import {
        IMPORT_BODY_LIMIT
    } else {
        JSON_BODY_LIMIT
    }
}

struct EdgeState {
    metrics: Arc<Metrics>,
    cors: bool,
    body_timeout: std::time::Duration,
    hsts: bool,
    routes: Arc<Routes>,
    allowed: Arc<Allowed>,
}

/// The spec's path template of each operation id (`/api/v1/tenants/{tenant_id}`), used as
/// the route label: poem's own patterns name parameters `:param0`.
pub type Routes = std::collections::HashMap<String, String>;

/// The methods each route answers, for the `Allow` header every `405` carries (RFC 9110),
/// keyed by the route's shape: poem's patterns name parameters `:param0`, the spec's
/// `{tenant_id}`, so both become `*`.
pub struct Allowed(std::collections::HashMap<String, HeaderValue>);

impl Allowed {
    /// The methods of each path of the spec, and `HEAD` wherever `GET` is (poem answers it
    /// with the `GET` handler, without the body).
    pub fn from_spec(spec: &serde_json::Value) -> Allowed {
        let mut table = std::collections::HashMap::new();
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            let mut methods: Vec<String> = item
                .as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .map(|m| m.to_ascii_uppercase())
                .collect();
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into());
            }
            methods.sort();
            let value = HeaderValue::from_str(&methods.join(", ")).expect("method names");
            table.insert(shape(path), value);
        }
        Allowed(table)
    }

    /// The `Allow` value of the route poem matched. Outside the spec only the operations
    /// endpoints are routed, and each of them is a `GET`.
    fn of(&self, pattern: &str) -> HeaderValue {
        self.0
            .get(&shape(pattern))
            .cloned()
            .unwrap_or(HeaderValue::from_static("GET, HEAD"))
    }
}

fn shape(pattern: &str) -> String {
    let param = |s: &str| s.starts_with(':') || s.starts_with('{');
    let segments: Vec<&str> = pattern
        .split('/')
        .map(|s| if param(s) { "*" } else { s })
        .collect();
    segments.join("/")
}

/// Wraps an app in the edge.
pub(crate) fn wrap(
    app: impl Endpoint<Output = Response> + 'static,
    config: &HttpConfig,
    metrics: Arc<Metrics>,
    routes: Arc<Routes>,
    allowed: Arc<Allowed>,
) -> impl Endpoint<Output = Response> + 'static {
    let state = Arc::new(EdgeState {
        metrics,
        cors: !config.cors_origins.is_empty(),
        body_timeout: config.conn.body_timeout,
        hsts: config.is_https(),
        routes,
        allowed,
    });
    let cors = super::cors(config);
    let app = app
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .map_to_response();
    let app = Arc::new(app);
    poem::endpoint::make(move |req: Request| {
        let (app, state) = (app.clone(), state.clone());
        async move { Ok::<_, poem::Error>(handle(app.as_ref(), req, &state).await) }
    })
}

/// A client's request id is echoed when it is safe to put in logs and headers.
fn incoming_request_id(req: &Request) -> Option<String> {
    let raw = req.headers().get("x-request-id")?.to_str().ok()?;
    let ok = (1..=128).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| raw.to_string())
}

async fn handle(
    app: &impl Endpoint<Output = Response>,
    req: Request,
    state: &EdgeState,
) -> Response {
    let started = Instant::now();
    let request_id = incoming_request_id(&req).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "http_request",
        otel.kind = "server",
        request_id = %request_id,
        http.request.method = %method,
        http.route = Empty,
        http.response.status_code = Empty,
    );
    let client_ip = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(512).collect());
    let mut context = RequestContext::http(request_id.clone(), path.clone(), client_ip, user_agent);
    context.unreadable_idempotency_key = req
        .headers()
        .get(kernel::idempotency::HEADER)
        .is_some_and(|v| v.to_str().is_err());
    let context = Arc::new(context);

    let mut resp = context
        .clone()
        .scope(
            async {
                let result = match refuse_nul(&req) {
                    Err(problem) => Err(problem.into()),
                    Ok(()) => match limit_body(req, state.body_timeout).await {
                        Ok(req) => app.call(req).await,
                        Err(problem) => Err(problem.into()),
                    },
                };
                match result {
                    Ok(resp) => resp,
                    Err(err) => {
                        let mut resp = Problem::from_poem_error(&err).into_response();
                        if let Some(pattern) = err.data::<PathPattern>() {
                            if err.is::<MethodNotAllowedError>() {
                                let allow = state.allowed.of(&pattern.0);
                                resp.headers_mut().insert(header::ALLOW, allow);
                            }
                            resp.set_data(pattern.clone());
                        }
                        if let Some(operation) = err.data::<OperationId>() {
                            resp.set_data(*operation);
                        }
                        resp
                    }
                }
            }
            .instrument(span.clone()),
        )
        .await;

    let status = resp.status().as_u16();
    let route = resp
        .data::<OperationId>()
        .and_then(|id| state.routes.get(id.0).cloned())
        .or_else(|| resp.data::<PathPattern>().map(|p| p.0.to_string()))
        .unwrap_or_else(|| "unmatched".to_string());
    let headers = resp.headers_mut();
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(&request_id).expect("request ids are header-safe"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    // API answers are per caller and many carry tokens, secrets or personal data: no
    // cache keeps them unless a route says otherwise.
    if (path == "/api" || path.starts_with("/api/")) && !headers.contains_key(header::CACHE_CONTROL)
    {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // With CORS on, whether an answer carries `Access-Control-Allow-Origin` depends on the
    // request's `Origin`: shared caches must key on it.
    if state.cors {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if context.is_replayed() {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if state.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }

    let elapsed = started.elapsed();
    state
        .metrics
        .observe(method.as_str(), &route, status, elapsed.as_secs_f64());
    // tracing-opentelemetry ignores `otel.name` once a span was entered; rename it through
    // the OpenTelemetry span itself (a no-op when no exporter is configured).
    span.context()
        .span()
        .update_name(format!("{method} {route}"));
    span.record("http.route", route.as_str());
    span.record("http.response.status_code", status);
    let client_ip = client_ip.map(|ip| ip.to_string());
    tracing::info!(
        target: "balance::http",
        parent: &span,
        request_id = %request_id,
        method = %method,
        route = %route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        client_ip = client_ip.as_deref().unwrap_or("-"),
        actor = context.actor().unwrap_or("-"),
        "request served"
    );
    resp
}

/// A NUL character in the path or the query (`%00`) is refused before routing, for every
/// route at once: PostgreSQL cannot store one, and no name or filter needs it. (JSON bodies
/// are checked where they are parsed, `kernel::json::parse`.)
fn refuse_nul(req: &Request) -> Result<(), Problem> {
    let has_nul = |s: &str| s.contains("%00");
    let field = if has_nul(req.uri().path()) {
        "path"
    } else if req.uri().query().is_some_and(has_nul) {
        "query"
    } else {
        return Ok(());
    };
    Err(Problem::validation(vec![kernel::FieldError::new(
        field,
        "must not contain NUL characters (%00)",
    )]))
}

/// Enforces the body limit and deadline before routing, so unknown routes are covered too.
///
/// Small limits read the body up front (it fits in memory anyway), all of it within
/// `timeout`; the large import limit wraps the stream and fails the read the moment it passes
/// the limit, or when no chunk arrived for `timeout`.
async fn limit_body(mut req: Request, timeout: std::time::Duration) -> Result<Request, Problem> {
    let limit = body_limit_for(req.method(), req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Problem::payload_too_large(limit));
    }
    if declared == Some(0) {
        return Ok(req);
    }
    let body = req.take_body();
    if limit == JSON_BODY_LIMIT {
        let read = tokio::time::timeout(timeout, body.into_bytes_limit(limit)).await;
        let bytes = read
            .map_err(|_| Problem::request_timeout(timeout))?
            .map_err(|e| match e {
                poem::error::ReadBodyError::PayloadTooLarge => Problem::payload_too_large(limit),
                other => Problem::bad_request(
                    "unreadable_body",
                    format!("The request body could not be read: {other}"),
                ),
            })?;
        req.set_body(bytes);
    } else {
        let stream = futures_util::stream::unfold(
            Some((body.into_bytes_stream(), 0usize)),
            move |state| async move {
                let (mut stream, seen) = state?;
                let chunk = match tokio::time::timeout(timeout, stream.next()).await {
                    Err(_) => Err(std::io::Error::other(kernel::problem::BodyTimedOut(
                        timeout,
                    ))),
                    Ok(None) => return None,
                    Ok(Some(chunk)) => chunk,
                };
                let seen = seen + chunk.as_ref().map_or(0, |c| c.len());
                let chunk = chunk.and_then(|c| {
                    if seen > limit {
                        Err(std::io::Error::other(kernel::problem::BodyTooLarge(limit)))
                    } else {
                        Ok(c)
                    }
                });
                // After an error the stream ends.
                let next = chunk.is_ok().then_some((stream, seen));
                Some((chunk, next))
            },
        );
        req.set_body(Body::from_bytes_stream(stream));
    }
    Ok(req)
}

/// A panic in a handler: a 500 problem for the client, the message for the log.
pub(crate) fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %message, "handler panicked");
    Problem::internal().into_response()
}
