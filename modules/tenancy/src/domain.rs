//! Tenancy's domain types, as callers receive them (and as the API shows them).

use chrono::{DateTime, Utc};
use kernel::{TenantId, UserId};
use poem_openapi::Object;
use uuid::Uuid;

/// A tenant workspace.
#[derive(Debug, Clone, Object)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub plan: String,
    /// The base currency budgets and analytics report in (ISO 4217).
    pub currency: String,
    /// The IANA time zone (`Europe/Berlin`) whose date is "today" for budget periods.
    pub time_zone: String,
    /// The caller's roles in it.
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Set while a deleted tenant waits out its grace period; `null` otherwise.
    pub deleted_at: Option<DateTime<Utc>>,
    /// For `If-Match` on rename.
    pub version: i64,
}

/// A member and their roles.
#[derive(Debug, Clone, Object)]
pub struct Member {
    pub user_id: UserId,
    pub name: String,
    pub email: String,
    pub roles: Vec<String>,
    /// The accounts they may see; `null`: every account.
    pub account_ids: Option<Vec<Uuid>>,
    pub joined_at: DateTime<Utc>,
    /// For `If-Match` on role changes.
    pub version: i64,
}

/// An invitation (its token is only in the mail).
#[derive(Debug, Clone, Object)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
    /// The accounts the invitee will see; `null`: every account.
    pub account_ids: Option<Vec<Uuid>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `null` until accepted.
    pub accepted_at: Option<DateTime<Utc>>,
    /// `null` unless revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An API key as lists show it: never its secret.
#[derive(Debug, Clone, Object)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub roles: Vec<String>,
    /// The accounts it may see (within its creator's); `null`: every account.
    pub account_ids: Option<Vec<Uuid>>,
    /// Enough to recognise the key, not to use it.
    pub prefix: String,
    /// `null`: it does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// `null` until first used; recorded at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    /// `null` unless revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A created API key, with its secret: shown only now.
#[derive(Clone, Object)]
pub struct CreatedApiKey {
    pub id: Uuid,
    pub name: String,
    pub roles: Vec<String>,
    /// The accounts it may see; `null`: every account.
    pub account_ids: Option<Vec<Uuid>>,
    pub prefix: String,
    /// `bal_live_…`: use it as `Authorization: Bearer …`. It is not stored and never shown again.
    pub secret: String,
    /// `null`: it does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .field("secret", &"***")
            .finish_non_exhaustive()
    }
}

/// What an `Idempotency-Key` keeps of a created API key: the secret only sealed by the vault
/// (bound to the tenant and key), for the 24 hours keys are kept.
#[derive(Debug, Clone, Object)]
pub struct SealedApiKey {
    pub id: Uuid,
    pub name: String,
    pub roles: Vec<String>,
    pub account_ids: Option<Vec<Uuid>>,
    pub prefix: String,
    pub sealed_secret: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}
