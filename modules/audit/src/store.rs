//! The audit log's SQL, and nothing else. The tenant chains (`events`, `event_clients`,
//! `audit_heads`, `audit_checkpoints`, keyed by `tenant_id`) and the platform chain (the
//! `platform_*` tables, keyed by `chain_id`) have the same shape; each statement exists once
//! per chain, so sqlx checks both.

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream::BoxStream};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::service::{Chain, EventRows};

/// A chain's head: the last `seq` and its hash.
pub(crate) struct Head {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// Creates the chain's head row on its first event.
pub(crate) async fn ensure_head(conn: &mut PgConnection, chain: Chain) -> Result<(), sqlx::Error> {
    match chain {
        Chain::Tenant(t) => {
            sqlx::query!(
                "INSERT INTO audit_heads (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING",
                t
            )
            .execute(conn)
            .await?
        }
        Chain::Platform => {
            sqlx::query!(
                "INSERT INTO platform_audit_head (chain_id) VALUES ($1) ON CONFLICT DO NOTHING",
                chain.key()
            )
            .execute(conn)
            .await?
        }
    };
    Ok(())
}

/// Locks the chain's head: the per-chain lock that serialises only this tail of a
/// transaction.
pub(crate) async fn lock_head(conn: &mut PgConnection, chain: Chain) -> Result<Head, sqlx::Error> {
    match chain {
        Chain::Tenant(t) => {
            sqlx::query_as!(
                Head,
                "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE",
                t
            )
            .fetch_one(conn)
            .await
        }
        Chain::Platform => {
            sqlx::query_as!(
                Head,
                "SELECT seq, hash FROM platform_audit_head WHERE chain_id = $1 FOR UPDATE",
                chain.key()
            )
            .fetch_one(conn)
            .await
        }
    }
}

/// The chain's head, if it has one.
pub(crate) async fn head(
    conn: &mut PgConnection,
    chain: Chain,
) -> Result<Option<Head>, sqlx::Error> {
    match chain {
        Chain::Tenant(t) => {
            sqlx::query_as!(
                Head,
                "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1",
                t
            )
            .fetch_optional(conn)
            .await
        }
        Chain::Platform => {
            sqlx::query_as!(
                Head,
                "SELECT seq, hash FROM platform_audit_head WHERE chain_id = $1",
                chain.key()
            )
            .fetch_optional(conn)
            .await
        }
    }
}

pub(crate) async fn update_head(
    conn: &mut PgConnection,
    chain: Chain,
    seq: i64,
    hash: &[u8],
) -> Result<(), sqlx::Error> {
    match chain {
        Chain::Tenant(t) => sqlx::query!(
            "UPDATE audit_heads SET seq = $2, hash = $3, updated_at = now() WHERE tenant_id = $1",
            t,
            seq,
            hash
        )
        .execute(conn)
        .await?,
        Chain::Platform => sqlx::query!(
            "UPDATE platform_audit_head SET seq = $2, hash = $3, updated_at = now() WHERE chain_id = $1",
            chain.key(),
            seq,
            hash
        )
        .execute(conn)
        .await?,
    };
    Ok(())
}

/// One statement for a unit of work's events, however many it recorded.
pub(crate) async fn insert_events(
    conn: &mut PgConnection,
    chain: Chain,
    r: &EventRows,
) -> Result<(), sqlx::Error> {
    match chain {
        Chain::Tenant(t) => sqlx::query!(
            "INSERT INTO events (tenant_id, seq, id, occurred_at, type, actor_kind, actor_id, source_agent,
                                 resource_type, resource_id, request_id, canonical, hash_version, prev_hash, hash)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[], $7::uuid[],
                                      $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int2[],
                                      $14::bytea[], $15::bytea[])",
            t,
            &r.seq,
            &r.id,
            &r.occurred_at,
            &r.kind,
            &r.actor_kind,
            &r.actor_id as &[Option<Uuid>],
            &r.source_agent,
            &r.resource_type as &[Option<String>],
            &r.resource_id as &[Option<String>],
            &r.request_id as &[Option<String>],
            &r.canonical,
            &r.hash_version,
            &r.prev_hash,
            &r.hash,
        )
        .execute(conn)
        .await?,
        Chain::Platform => sqlx::query!(
            "INSERT INTO platform_events (chain_id, seq, id, occurred_at, type, actor_kind, actor_id, source_agent,
                                          resource_type, resource_id, request_id, canonical, hash_version, prev_hash, hash)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[], $7::uuid[],
                                      $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int2[],
                                      $14::bytea[], $15::bytea[])",
            chain.key(),
            &r.seq,
            &r.id,
            &r.occurred_at,
            &r.kind,
            &r.actor_kind,
            &r.actor_id as &[Option<Uuid>],
            &r.source_agent,
            &r.resource_type as &[Option<String>],
            &r.resource_id as &[Option<String>],
            &r.request_id as &[Option<String>],
            &r.canonical,
            &r.hash_version,
            &r.prev_hash,
            &r.hash,
        )
        .execute(conn)
        .await?,
    };
    Ok(())
}

/// The client of a unit of work's events, outside the hashed text (so it can be erased).
pub(crate) async fn insert_clients(
    conn: &mut PgConnection,
    chain: Chain,
    events: &[Uuid],
    ip: Option<String>,
    user_agent: Option<&str>,
) -> Result<(), sqlx::Error> {
    match chain {
        Chain::Tenant(t) => {
            sqlx::query!(
                "INSERT INTO event_clients (tenant_id, event_id, ip, user_agent)
             SELECT $1, unnest($2::uuid[]), $3::text::inet, $4",
                t,
                events,
                ip,
                user_agent,
            )
            .execute(conn)
            .await?
        }
        Chain::Platform => {
            sqlx::query!(
                "INSERT INTO platform_event_clients (chain_id, event_id, ip, user_agent)
             SELECT $1, unnest($2::uuid[]), $3::text::inet, $4",
                chain.key(),
                events,
                ip,
                user_agent,
            )
            .execute(conn)
            .await?
        }
    };
    Ok(())
}

/// A signed checkpoint as stored.
pub(crate) struct CheckpointRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// Stores a checkpoint; `false` when the chain has one at that `seq` already.
pub(crate) async fn insert_checkpoint(
    conn: &mut PgConnection,
    chain: Chain,
    cp: &CheckpointRow,
) -> Result<bool, sqlx::Error> {
    let inserted = match chain {
        Chain::Tenant(t) => {
            sqlx::query!(
                "INSERT INTO audit_checkpoints (tenant_id, seq, hash, signed_at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                t,
                cp.seq,
                &cp.hash,
                cp.signed_at,
                &cp.key_id,
                &cp.signature,
            )
            .execute(conn)
            .await?
        }
        Chain::Platform => {
            sqlx::query!(
            "INSERT INTO platform_checkpoints (chain_id, seq, hash, signed_at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            chain.key(),
            cp.seq,
            &cp.hash,
            cp.signed_at,
            &cp.key_id,
            &cp.signature,
        )
            .execute(conn)
            .await?
        }
    };
    Ok(inserted.rows_affected() == 1)
}

/// The `seq` of the chain's last checkpoint.
pub(crate) async fn last_checkpoint(
    conn: &mut PgConnection,
    chain: Chain,
) -> Result<Option<i64>, sqlx::Error> {
    match chain {
        Chain::Tenant(t) => {
            sqlx::query_scalar!(
                "SELECT max(seq) FROM audit_checkpoints WHERE tenant_id = $1",
                t
            )
            .fetch_one(conn)
            .await
        }
        Chain::Platform => {
            sqlx::query_scalar!(
                "SELECT max(seq) FROM platform_checkpoints WHERE chain_id = $1",
                chain.key()
            )
            .fetch_one(conn)
            .await
        }
    }
}

/// The chain's checkpoints, oldest first.
pub(crate) async fn checkpoints(
    conn: &mut PgConnection,
    chain: Chain,
) -> Result<Vec<CheckpointRow>, sqlx::Error> {
    match chain {
        Chain::Tenant(t) => {
            sqlx::query_as!(
                CheckpointRow,
                "SELECT seq, hash, signed_at, key_id, signature FROM audit_checkpoints
                 WHERE tenant_id = $1 ORDER BY seq",
                t
            )
            .fetch_all(conn)
            .await
        }
        Chain::Platform => {
            sqlx::query_as!(
                CheckpointRow,
                "SELECT seq, hash, signed_at, key_id, signature FROM platform_checkpoints
                 WHERE chain_id = $1 ORDER BY seq",
                chain.key()
            )
            .fetch_all(conn)
            .await
        }
    }
}

/// An event as stored: its queryable columns, its canonical text and hashes.
pub(crate) struct EventRow {
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub source_agent: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    pub canonical: String,
    pub hash_version: i16,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Every event of the chain in `seq` order, streamed (constant memory).
pub(crate) fn chain_events(
    conn: &mut PgConnection,
    chain: Chain,
) -> BoxStream<'_, Result<EventRow, sqlx::Error>> {
    match chain {
        Chain::Tenant(t) => sqlx::query_as!(
            EventRow,
            r#"SELECT seq, id, occurred_at, type AS kind, actor_kind, actor_id, source_agent, resource_type,
                      resource_id, request_id, canonical, hash_version, prev_hash, hash
               FROM events WHERE tenant_id = $1 ORDER BY seq"#,
            t
        )
        .fetch(conn)
        .boxed(),
        Chain::Platform => sqlx::query_as!(
            EventRow,
            r#"SELECT seq, id, occurred_at, type AS kind, actor_kind, actor_id, source_agent, resource_type,
                      resource_id, request_id, canonical, hash_version, prev_hash, hash
               FROM platform_events WHERE chain_id = $1 ORDER BY seq"#,
            chain.key()
        )
        .fetch(conn)
        .boxed(),
    }
}

/// Every tenant, for the hourly checkpoint tick (one `TenantTx` each).
pub(crate) async fn tenant_ids(conn: &mut PgConnection) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM tenants ORDER BY id")
        .fetch_all(conn)
        .await
}

/// An event as the list shows it, with its client.
pub(crate) struct ListedEvent {
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub source_agent: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    pub canonical: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A page of the tenant's events, newest first, before `before` (every filter optional).
pub(crate) async fn list_events(
    conn: &mut PgConnection,
    tenant: Uuid,
    filter: &crate::EventFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ListedEvent>, sqlx::Error> {
    sqlx::query_as!(
        ListedEvent,
        r#"SELECT e.seq, e.id, e.occurred_at, e.type AS kind, e.actor_kind, e.actor_id, e.source_agent,
                  e.resource_type, e.resource_id, e.request_id, e.canonical, e.prev_hash, e.hash,
                  host(c.ip) AS ip, c.user_agent AS "user_agent?"
           FROM events e
           LEFT JOIN event_clients c ON c.tenant_id = e.tenant_id AND c.event_id = e.id
           WHERE e.tenant_id = $1
             AND ($2::text IS NULL OR e.type = $2)
             AND ($3::uuid IS NULL OR e.actor_id = $3)
             AND ($4::text IS NULL OR e.resource_type = $4)
             AND ($5::text IS NULL OR e.resource_id = $5)
             AND ($6::timestamptz IS NULL OR e.occurred_at >= $6)
             AND ($7::timestamptz IS NULL OR e.occurred_at < $7)
             AND ($8::bigint IS NULL OR e.seq < $8)
           ORDER BY e.seq DESC
           LIMIT $9"#,
        tenant,
        filter.kind.as_deref(),
        filter.actor_id,
        filter.resource_type.as_deref(),
        filter.resource_id.as_deref(),
        filter.from,
        filter.to,
        before,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// The last `seq` of the tenant's chain (0 before its first event).
pub(crate) async fn last_seq(conn: &mut PgConnection, tenant: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT coalesce(max(seq), 0) AS "seq!" FROM audit_heads WHERE tenant_id = $1"#,
        tenant
    )
    .fetch_one(conn)
    .await
}

/// An event as an export carries it.
pub(crate) struct ExportRow {
    pub seq: i64,
    pub canonical: String,
    pub hash_version: i16,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Up to `limit` events of the tenant's chain with `after < seq <= until`, in order.
pub(crate) async fn export_batch(
    conn: &mut PgConnection,
    tenant: Uuid,
    after: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<ExportRow>, sqlx::Error> {
    sqlx::query_as!(
        ExportRow,
        "SELECT seq, canonical, hash_version, prev_hash, hash FROM events
         WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
        tenant,
        after,
        until,
        limit,
    )
    .fetch_all(conn)
    .await
}
