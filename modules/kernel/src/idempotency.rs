//! Idempotency keys for every creating `POST` (API.md): the first request with a key runs
//! and its response is stored in the same transaction as its effects; a repeat with the same
//! key and body replays it; the same key with another body is `422 idempotency_key_reused`.
//!
//! Two concurrent requests with one key run once: the first one's uncommitted claim row
//! makes the second one's `INSERT … ON CONFLICT DO NOTHING` wait; when the first commits, the
//! second finds its stored response and replays it (when it rolls back, the second runs).
//! A failed request rolls its claim back with everything else, so a retry runs again.
//! Keys are per tenant (`idempotency_keys`) or, on tenant-less endpoints, per user
//! (`user_idempotency_keys`), and expire after 24 hours.

use poem::http::StatusCode;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    context::RequestContext,
    db::{TenantTx, Tx, UserTx},
    problem::{FieldError, Problem},
};

/// The name of the request header.
pub const HEADER: &str = "Idempotency-Key";

/// A client-chosen key: 1-255 visible ASCII characters (a UUID is typical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses the header value; `422` naming the header otherwise.
    pub fn parse(raw: &str) -> Result<IdempotencyKey, Problem> {
        let ok = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(IdempotencyKey(raw.to_string()))
        } else {
            Err(invalid_key())
        }
    }

    /// Parses an optional header value; a header the router could not read as text (see
    /// [`RequestContext::unreadable_idempotency_key`]) is refused, not taken as absent.
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<IdempotencyKey>, Problem> {
        let unreadable = RequestContext::current().is_some_and(|c| c.unreadable_idempotency_key);
        if raw.is_none() && unreadable {
            return Err(invalid_key());
        }
        raw.map(IdempotencyKey::parse).transpose()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn invalid_key() -> Problem {
    Problem::validation(vec![FieldError::new(
        HEADER,
        "must be 1-255 visible ASCII characters",
    )])
}

/// What identifies a request for replay: the operation and the exact body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `body` sent to `operation` (its operation id).
    pub fn new(operation: &str, body: &[u8]) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(operation.as_bytes());
        h.update([0]);
        h.update(body);
        Fingerprint(h.finalize().into())
    }
}

/// A response as stored for replay.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    status: i16,
    body: serde_json::Value,
}

enum Claim {
    Fresh,
    Replay(Stored),
}

fn reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "Idempotency key reused",
    )
    .with_detail(
        "This Idempotency-Key was used with a different request; use a new key for a new request.",
    )
}

fn decide(
    row: Option<(Vec<u8>, Option<i16>, Option<serde_json::Value>)>,
    fingerprint: &Fingerprint,
) -> Result<Claim, Problem> {
    match row {
        None => Ok(Claim::Fresh),
        Some((stored, _, _)) if stored != fingerprint.0 => Err(reused()),
        Some((_, Some(status), Some(body))) => Ok(Claim::Replay(Stored { status, body })),
        // A committed claim always has its response (both are written in one transaction).
        Some(_) => Err(Problem::internal()),
    }
}

/// Whose keys: a tenant's (`idempotency_keys`), or a user's on tenant-less endpoints
/// (`user_idempotency_keys`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Keys {
    Tenant(Uuid),
    User(Uuid),
}

/// The handles a key can be scoped to: a tenant's keys, or a user's on tenant-less endpoints.
pub trait IdempotencyScope: Tx + Sized {
    /// Whose keys this handle claims.
    #[doc(hidden)]
    fn keys_of(&self) -> Keys;
    #[doc(hidden)]
    fn finish(self) -> impl Future<Output = Result<(), Problem>> + Send;
}

impl IdempotencyScope for TenantTx {
    fn keys_of(&self) -> Keys {
        Keys::Tenant(self.tenant_id().as_uuid())
    }
    async fn finish(self) -> Result<(), Problem> {
        self.commit().await
    }
}

impl IdempotencyScope for UserTx {
    fn keys_of(&self) -> Keys {
        Keys::User(self.user_id().as_uuid())
    }
    async fn finish(self) -> Result<(), Problem> {
        self.commit().await
    }
}

/// A stored claim: the request's fingerprint and, once committed, its response.
struct ClaimRow {
    fingerprint: Vec<u8>,
    status: Option<i16>,
    body: Option<serde_json::Value>,
}

/// Inserts the claim row, or reads the row a previous (or concurrent, once it commits)
/// request left. The two key tables have the same shape; each gets its own checked
/// statements.
async fn claim_row<S: IdempotencyScope>(
    tx: &mut S,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
) -> Result<Claim, Problem> {
    let (key, print) = (key.as_str(), &fingerprint.0[..]);
    let row = match tx.keys_of() {
        Keys::Tenant(owner) => {
            sqlx::query!(
                "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND expires_at <= now()",
                owner,
                key,
            )
            .execute(tx.conn())
            .await?;
            let inserted = sqlx::query!(
                "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, expires_at)
                 VALUES ($1, $2, $3, now() + interval '24 hours')
                 ON CONFLICT (tenant_id, key) DO NOTHING",
                owner,
                key,
                print,
            )
            .execute(tx.conn())
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(Claim::Fresh);
            }
            sqlx::query_as!(
                ClaimRow,
                "SELECT fingerprint, status, body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
                owner,
                key,
            )
            .fetch_optional(tx.conn())
            .await?
        }
        Keys::User(owner) => {
            sqlx::query!(
                "DELETE FROM user_idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at <= now()",
                owner,
                key,
            )
            .execute(tx.conn())
            .await?;
            let inserted = sqlx::query!(
                "INSERT INTO user_idempotency_keys (user_id, key, fingerprint, expires_at)
                 VALUES ($1, $2, $3, now() + interval '24 hours')
                 ON CONFLICT (user_id, key) DO NOTHING",
                owner,
                key,
                print,
            )
            .execute(tx.conn())
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(Claim::Fresh);
            }
            sqlx::query_as!(
                ClaimRow,
                "SELECT fingerprint, status, body FROM user_idempotency_keys WHERE user_id = $1 AND key = $2",
                owner,
                key,
            )
            .fetch_optional(tx.conn())
            .await?
        }
    };
    decide(row.map(|r| (r.fingerprint, r.status, r.body)), fingerprint)
}

async fn store_row<S: IdempotencyScope>(
    tx: &mut S,
    key: &IdempotencyKey,
    status: i16,
    body: &serde_json::Value,
) -> Result<(), Problem> {
    match tx.keys_of() {
        Keys::Tenant(owner) => sqlx::query!(
            "UPDATE idempotency_keys SET status = $3, body = $4 WHERE tenant_id = $1 AND key = $2",
            owner,
            key.as_str(),
            status,
            body,
        )
        .execute(tx.conn())
        .await?,
        Keys::User(owner) => sqlx::query!(
            "UPDATE user_idempotency_keys SET status = $3, body = $4 WHERE user_id = $1 AND key = $2",
            owner,
            key.as_str(),
            status,
            body,
        )
        .execute(tx.conn())
        .await?,
    };
    Ok(())
}

/// Claims `key` for this request inside `tx`, before doing the work.
///
/// `Ok(Some(response))`: the key was used before by the same request; return `response`
/// (the handler's typed response is rebuilt from the stored body, and the HTTP response
/// carries `Idempotent-Replayed: true`). `Ok(None)`: do the work, then [`commit`].
/// Without a key, this is `Ok(None)` and [`commit`] just commits.
pub async fn claim<S: IdempotencyScope, T: ParseFromJSON>(
    tx: &mut S,
    key: Option<&IdempotencyKey>,
    fingerprint: Fingerprint,
    status: StatusCode,
) -> Result<Option<T>, Problem> {
    let Some(key) = key else { return Ok(None) };
    match claim_row(tx, key, &fingerprint).await? {
        Claim::Fresh => Ok(None),
        Claim::Replay(stored) => {
            if stored.status != status.as_u16() as i16 {
                tracing::error!(
                    stored = stored.status,
                    "a stored idempotent response has another status"
                );
                return Err(Problem::internal());
            }
            if let Some(ctx) = RequestContext::current() {
                ctx.mark_replayed();
            }
            T::parse_from_json(Some(stored.body)).map(Some).map_err(|e| {
                tracing::error!(error = %e.into_message(), "a stored idempotent response no longer parses");
                Problem::internal()
            })
        }
    }
}

/// Stores `response` under `key` (when there is one) and commits, so the response and the
/// work's effects become visible together or not at all.
pub async fn commit<S: IdempotencyScope, T: ToJSON>(
    mut tx: S,
    key: Option<&IdempotencyKey>,
    status: StatusCode,
    response: &T,
) -> Result<(), Problem> {
    if let Some(key) = key {
        let body = response.to_json().unwrap_or_default();
        store_row(&mut tx, key, status.as_u16() as i16, &body).await?;
    }
    tx.finish().await
}

/// A tenant transaction whose idempotency keys are its user's: for a tenant-less endpoint
/// that works inside a tenant it is creating (`POST /tenants`).
pub struct UserKeyed(pub TenantTx, pub crate::ids::UserId);

impl Tx for UserKeyed {
    fn conn(&mut self) -> &mut sqlx::PgConnection {
        Tx::conn(&mut self.0)
    }
    fn context(&self) -> &crate::db::TxContext {
        Tx::context(&self.0)
    }
    fn extensions_mut(&mut self) -> &mut http::Extensions {
        Tx::extensions_mut(&mut self.0)
    }
}

impl IdempotencyScope for UserKeyed {
    fn keys_of(&self) -> Keys {
        Keys::User(self.1.as_uuid())
    }
    async fn finish(self) -> Result<(), Problem> {
        self.0.commit().await
    }
}

/// Removes the expired `Idempotency-Key` rows of every tenant and user (the hourly sweep);
/// returns how many. A security-definer function does it, so the runtime role needs no
/// policy that would let it see every tenant's keys.
pub async fn sweep(tx: &mut crate::db::SystemTx) -> Result<i64, Problem> {
    let swept = sqlx::query_scalar!(r#"SELECT balance_sweep_idempotency() AS "swept!""#)
        .fetch_one(tx.conn())
        .await?;
    Ok(swept)
}
