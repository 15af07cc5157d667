//! The one error type of the API, rendered in one place as an RFC 9457 problem.
//!
//! Every error response of Balance, whether it comes from a handler, from parsing, from
//! routing or from a panic, leaves the server as `application/problem+json` with a stable
//! machine `code` and the `request_id` of the request.

use std::borrow::Cow;

use poem::{
    IntoResponse, Response,
    error::{MethodNotAllowedError, NotFoundError, ReadBodyError, ResponseError},
    http::{HeaderName, HeaderValue, StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object,
    error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    },
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::{ToJSON, Type},
};

use crate::context::RequestContext;

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a request: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `items[2].amount`, or a parameter name.
    pub field: String,
    /// What is wrong, for a person to read.
    pub message: String,
}

impl FieldError {
    /// A field error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The body of an error response (RFC 9457).
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(rename = "Problem")]
pub struct ProblemBody {
    /// A URI naming the kind of problem: `urn:balance:problem:<code>`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The path of the request.
    pub instance: String,
    /// The request id, also in the `X-Request-Id` header and in the server's logs.
    pub request_id: String,
    /// A stable machine-readable code, e.g. `validation_failed`.
    pub code: String,
    /// The invalid fields, for `validation_failed`.
    // `default`: absent means none, so the spec does not list it as required.
    #[oai(default, skip_serializing_if_is_empty)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The plan limit reached, for `plan_limit_reached` (`members`, `bank_connections`,
    /// `transactions_per_month`, `telegram_recipients`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// The response fields that are left out when they have no value, as `(schema, property)`.
/// Every other optional field of a response is sent as `null` (docs/ARCHITECTURE.md, "The
/// spec's rules"); the spec post-processing reads this list to tell the two apart.
pub const OMITTED_WHEN_ABSENT: &[(&str, &str)] = &[
    ("Problem", "detail"),
    ("Problem", "errors"),
    ("Problem", "limit"),
];

/// The error a streamed body raises when it passes its limit; reading it becomes a 413.
#[derive(Debug, Clone, Copy)]
pub struct BodyTooLarge(pub usize);

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body exceeds the limit of {} bytes", self.0)
    }
}

impl std::error::Error for BodyTooLarge {}

/// The error a streamed body raises when its client stops sending; reading it becomes a 408.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimedOut(pub std::time::Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} ms",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

/// An error answered to the client as an RFC 9457 problem.
///
/// Build one with a constructor that names the situation ([`Problem::not_found`],
/// [`Problem::validation`], ...) or [`Problem::new`] for a module-specific code.
#[derive(Debug, Clone)]
pub struct Problem(Box<Inner>);

// Boxed: `Result<T, Problem>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
struct Inner {
    status: StatusCode,
    code: Cow<'static, str>,
    title: Cow<'static, str>,
    detail: Option<String>,
    errors: Vec<FieldError>,
    limit: Option<crate::limits::Limit>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// What caused it on our side: never sent, kept for logs and for a failed job's record.
    cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0.status.as_u16(), self.0.code)?;
        if let Some(detail) = &self.0.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl Problem {
    /// A problem with a status, a stable code and a title.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        title: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self(Box::new(Inner {
            status,
            code: code.into(),
            title: title.into(),
            detail: None,
            errors: Vec::new(),
            limit: None,
            headers: Vec::new(),
            cause: None,
        }))
    }

    /// Adds what went wrong with this request.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// Adds the invalid fields.
    #[must_use]
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.0.errors = errors;
        self
    }

    /// Names the plan limit a `plan_limit_reached` problem reached.
    #[must_use]
    pub fn with_limit(mut self, limit: crate::limits::Limit) -> Self {
        self.0.limit = Some(limit);
        self
    }

    /// The plan limit this problem names, if any.
    pub fn limit(&self) -> Option<crate::limits::Limit> {
        self.0.limit
    }

    /// Adds a response header (e.g. `Retry-After`, `Allow`).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.push((name, value));
        self
    }

    /// Keeps what caused this problem (a database error, a module's error). The client never
    /// sees it; logs and a failed job's `last_error` do.
    #[must_use]
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.cause = Some(std::sync::Arc::new(cause));
        self
    }

    /// The cause kept with [`Problem::with_cause`], if any.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.0.cause.as_deref()
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The machine code.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The field errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.0.errors
    }

    /// 400: a request the server cannot read at all.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "The request cannot be read").with_detail(detail)
    }

    /// 401: no valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Not signed in")
            .with_detail("Send a valid access token: Authorization: Bearer <token>.")
    }

    /// 403: the caller is known, but may not do this; `detail` says what is missing.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").with_detail(detail)
    }

    /// 409: the tenant was deleted and is read-only until it is purged.
    pub fn tenant_deleted() -> Self {
        Self::new(StatusCode::CONFLICT, "tenant_deleted", "Tenant deleted")
            .with_detail("This tenant was deleted; it is read-only until it is purged.")
    }

    /// 404: nothing here, or nothing the caller may know about.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found")
            .with_detail("There is no resource at this address.")
    }

    /// 405: the path exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
        )
        .with_detail("This resource does not support the request's method.")
    }

    /// 413: the body is larger than the endpoint accepts.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Request body too large",
        )
        .with_detail(format!(
            "The request body exceeds the limit of {limit} bytes."
        ))
    }

    /// 408: the client stopped sending its body. The connection is closed after the answer
    /// (what is left of the body is never read).
    pub fn request_timeout(after: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "Request body too slow",
        )
        .with_detail(format!(
            "The request body did not arrive within {} seconds.",
            after.as_secs_f64()
        ))
        .with_header(
            poem::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        )
    }

    /// 415: the body's media type is not one the endpoint reads.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
        )
        .with_detail(detail)
    }

    /// 422: the request is readable but some fields are invalid.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "The request is not valid",
        )
        .with_detail("One or more fields are invalid; see `errors`.")
        .with_errors(errors)
    }

    /// 500: a failure on our side. Says nothing about internals; the cause goes to the log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
        )
        .with_detail("Something went wrong on our side. Quote the request id when reporting it.")
    }

    /// 503: a dependency is not available.
    pub fn unavailable(code: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, "Service unavailable").with_detail(detail)
    }

    /// The body of this problem for the current request.
    pub fn body(&self) -> ProblemBody {
        let ctx = RequestContext::current();
        let p = &self.0;
        ProblemBody {
            kind: format!("urn:balance:problem:{}", p.code),
            title: p.title.to_string(),
            status: p.status.as_u16(),
            detail: p.detail.clone(),
            instance: ctx.as_ref().map(|c| c.path.clone()).unwrap_or_default(),
            request_id: ctx
                .as_ref()
                .map(|c| c.request_id.clone())
                .unwrap_or_default(),
            code: p.code.to_string(),
            errors: p.errors.clone(),
            limit: p.limit.map(|l| l.as_str().to_string()),
        }
    }

    /// Turns any error that reached the HTTP edge into the problem the client sees.
    ///
    /// Errors raised by poem and poem-openapi (routing, content type, parameters, body
    /// reading) map to their specific problems; anything unknown is a 500 whose cause is
    /// logged here and never shown.
    pub fn from_poem_error(err: &poem::Error) -> Problem {
        if let Some(problem) = err.downcast_ref::<Problem>() {
            return problem.clone();
        }
        if err.is::<NotFoundError>() || err.is::<ParsePathError>() {
            return Problem::not_found();
        }
        if err.is::<AuthorizationError>() {
            return Problem::unauthorized();
        }
        if err.is::<MethodNotAllowedError>() {
            return Problem::method_not_allowed();
        }
        if let Some(e) = err.downcast_ref::<ContentTypeError>() {
            let detail = match e {
                ContentTypeError::ExpectContentType => {
                    "The request has a body but no `Content-Type`; send `application/json`."
                        .to_string()
                }
                ContentTypeError::NotSupported { content_type } => {
                    format!("`{content_type}` is not supported here; send `application/json`.")
                }
            };
            return Problem::unsupported_media_type(detail);
        }
        if let Some(e) = err.downcast_ref::<ParseParamError>() {
            return Problem::validation(vec![FieldError::new(e.name, e.reason.clone())]);
        }
        if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
            return Problem::bad_request("malformed_body", e.reason.clone());
        }
        match err.downcast_ref::<ReadBodyError>() {
            Some(ReadBodyError::PayloadTooLarge) => return Problem::payload_too_large(0),
            Some(ReadBodyError::Io(io)) => {
                if let Some(BodyTooLarge(limit)) = io.get_ref().and_then(|e| e.downcast_ref()) {
                    return Problem::payload_too_large(*limit);
                }
                if let Some(BodyTimedOut(after)) = io.get_ref().and_then(|e| e.downcast_ref()) {
                    return Problem::request_timeout(*after);
                }
                return Problem::bad_request(
                    "unreadable_body",
                    "The request body could not be read.",
                );
            }
            _ => {}
        }
        let status = err.status();
        if status.is_client_error() {
            let code = status
                .canonical_reason()
                .unwrap_or("client_error")
                .to_ascii_lowercase()
                .replace([' ', '-'], "_");
            return Problem::new(
                status,
                code,
                status.canonical_reason().unwrap_or("Client error"),
            )
            .with_detail(err.to_string());
        }
        tracing::error!(error = %err, status = status.as_u16(), "request failed");
        Problem::internal()
    }
}

impl ResponseError for Problem {
    fn status(&self) -> StatusCode {
        self.0.status
    }

    fn as_response(&self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = Response::builder()
            .status(self.0.status)
            .header(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)
            .body(body);
        for (name, value) in &self.0.headers {
            resp.headers_mut().append(name.clone(), value.clone());
        }
        resp
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.as_response()
    }
}

/// The problem statuses every API operation can answer, listed in the spec.
const DOCUMENTED: &[(u16, &str)] = &[
    (
        400,
        "The request cannot be read (malformed JSON, bad encoding).",
    ),
    (401, "No valid credentials."),
    (
        402,
        "A plan limit is reached (`plan_limit_reached`, naming the `limit`), or the workspace is read-only while a payment is overdue (`tenant_read_only`).",
    ),
    (403, "Signed in, but not allowed to do this."),
    (404, "Not found, or not visible to the caller."),
    (409, "Conflicts with the current state."),
    (
        412,
        "`If-Match` names a version that is no longer current; re-read and retry.",
    ),
    (
        408,
        "The request body did not arrive in time; the connection is closed.",
    ),
    (413, "The request body is too large."),
    (415, "The request body's media type is not supported."),
    (422, "Some fields are invalid; see `errors`."),
    (429, "Too many requests; see `Retry-After`."),
    (500, "A failure on our side; quote the `request_id`."),
    (
        501,
        "The feature is not enabled on this platform (`feature_disabled`), e.g. billing without Stripe keys.",
    ),
    (
        502,
        "An outside service this needs (the payment provider, a bank) refused.",
    ),
    (
        503,
        "The database is not reachable, or the server is at its connection limit, right now; retry after `Retry-After` seconds.",
    ),
];

impl ApiResponse for Problem {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_CONTENT_TYPE,
                        schema: ProblemBody::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ProblemBody::register(registry);
    }
}

impl ProblemBody {
    /// The body as JSON, for tests and logs.
    pub fn to_value(&self) -> serde_json::Value {
        self.to_json().unwrap_or_default()
    }
}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, Problem>;

impl From<sqlx::Error> for Problem {
    /// A database failure the caller did not handle: `503` when the database cannot be
    /// reached (the client may retry), `500` otherwise. The cause goes to the log only.
    fn from(err: sqlx::Error) -> Problem {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => {
                tracing::error!(error = %err, "database unavailable");
                Problem::unavailable(
                    "database_unavailable",
                    "The database is not reachable right now; retry shortly.",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("2"))
                .with_cause(err)
            }
            _ => {
                tracing::error!(error = %err, "database error");
                Problem::internal().with_cause(err)
            }
        }
    }
}
