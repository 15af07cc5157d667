//! Tenant workspaces (API.md, Tenants): tenants (create, list mine, read, rename, delete
//! with a grace period, purge), their members and roles (never without an owner),
//! invitations by email, and API keys.
//!
//! [`Tenancy`] holds the rules and takes a kernel handle, so the routes ([`TenancyApi`]),
//! jobs, the bot and the CLI call the same functions; [`TenancyError`] becomes a problem in
//! one place.

mod domain;
mod error;
mod http;
mod purge;
mod rotation;
mod service;
mod store;

pub use domain::{ApiKey, CreatedApiKey, Invitation, Member, SealedApiKey, Tenant};
pub use error::TenancyError;
pub use http::{PERMISSIONS, TenancyApi};
pub use purge::{DELETION_GRACE_DAYS, PURGE_ORDER, PurgeError, purge};
pub use rotation::ApiKeyReplays;
pub use service::{NewKey, Tenancy};
