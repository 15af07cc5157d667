//! What every Balance module needs and nothing more.
//!
//! - [`problem`]: the one error type, rendered as RFC 9457 `application/problem+json`;
//! - [`context`]: the request context (request id, path) visible to the code serving a request;
//! - [`json`]: the JSON request body that reports every bad field by its path.
//!
//! The row-scoped database handles (`TenantTx`, `UserTx`, `SystemTx`), ids, money,
//! pagination and idempotency land here next (see `docs/ARCHITECTURE.md`).

pub mod context;
pub mod json;
pub mod problem;
pub mod secret;

pub use context::RequestContext;
pub use json::{FieldErrors, JsonBody, Validate};
pub use problem::{ApiResult, FieldError, Problem};
pub use secret::Secret;
