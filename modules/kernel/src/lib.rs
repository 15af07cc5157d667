//! What every Balance module needs and nothing more.
//!
//! - [`db`]: the only way to the database: [`TenantTx`], [`UserTx`], [`SystemTx`];
//! - [`migrate`]: migrations, the runtime role, the readiness check;
//! - [`problem`]: the one error type, rendered as RFC 9457 `application/problem+json`;
//! - [`context`]: the request context (request id, path, client) of the work being served;
//! - [`json`]: the JSON request body that reports every bad field by its path;
//! - [`idempotency`]: `Idempotency-Key` replay for creating `POST`s;
//! - [`concurrency`]: `If-Match` on versioned resources;
//! - [`limits`]: plan limits as the creating modules call them (billing implements them);
//! - [`page`]: keyset pagination with signed cursors;
//! - [`ids`], [`money`], [`email`], [`secret`], [`names`]: types that can only hold valid values;
//! - [`hex`]: the one hex encoding.

pub mod auth;
pub mod concurrency;
pub mod context;
pub mod db;
pub mod email;
pub mod hex;
pub mod idempotency;
pub mod ids;
pub mod json;
pub mod limits;
pub mod migrate;
pub mod money;
pub mod names;
pub mod page;
pub mod problem;
pub mod secret;
pub mod setup;

pub use context::{RequestContext, client_key};
pub use db::{
    Actor, CommitHook, CommitParts, Db, FirstRead, Literal, Scope, Statement, SystemTx, TenantTx,
    Tx, TxContext, UserTx,
};
pub use email::{Email, RawEmail};
pub use ids::{TenantId, UserId};
pub use json::{FieldErrors, JsonBody, LazyJson, Validate};
pub use money::{Currency, Money, MoneyError};
pub use names::{DisplayName, RoleNames};
pub use page::{CursorSigner, Keyset, Page, PageParams, Position, QueryId};
pub use problem::{ApiResult, FieldError, Problem};
pub use secret::Secret;
pub use setup::TenantSetup;
