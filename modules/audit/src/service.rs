//! Appending, checkpointing, reading, exporting and verifying chains. SQL lives here too:
//! the same statements serve the tenant chains and the platform chain, whose tables are
//! keyed by `tenant_id` and by a constant `chain_id` respectively.

use std::io::BufRead;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chrono::{DateTime, SubsecRound, Utc};
use futures_util::{Stream, TryStreamExt};
use kernel::{
    Db, PageParams, Problem, Scope, SystemTx, TenantId, TenantTx, TxContext, hex::encode as hex,
};
use poem_openapi::Object;
use serde_json::{Value, json};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::{
    CHECKPOINT_EVERY, Keys, NewEvent,
    chain::{self, Checkpoint, Facts, StoredEvent, Verification, Verifier},
    signing, timestamp,
};

/// Which chain, and the names of its tables.
#[derive(Debug, Clone, Copy)]
enum Chain {
    Tenant(Uuid),
    Platform,
}

struct Tables {
    key: &'static str,
    heads: &'static str,
    events: &'static str,
    clients: &'static str,
    checkpoints: &'static str,
}

const TENANT: Tables = Tables {
    key: "tenant_id",
    heads: "audit_heads",
    events: "events",
    clients: "event_clients",
    checkpoints: "audit_checkpoints",
};
const PLATFORM: Tables = Tables {
    key: "chain_id",
    heads: "platform_audit_head",
    events: "platform_events",
    clients: "platform_event_clients",
    checkpoints: "platform_checkpoints",
};

impl Chain {
    fn of(scope: Scope) -> Chain {
        match scope {
            Scope::Tenant(t) => Chain::Tenant(t.as_uuid()),
            Scope::User(_) | Scope::System => Chain::Platform,
        }
    }

    fn tables(&self) -> &'static Tables {
        match self {
            Chain::Tenant(_) => &TENANT,
            Chain::Platform => &PLATFORM,
        }
    }

    /// The value of the key column: the tenant, or the platform chain's constant id.
    fn key(&self) -> Uuid {
        match self {
            Chain::Tenant(t) => *t,
            Chain::Platform => Uuid::nil(),
        }
    }

    fn tenant(&self) -> Option<Uuid> {
        match self {
            Chain::Tenant(t) => Some(*t),
            Chain::Platform => None,
        }
    }

    /// The chain's name in signed checkpoint messages.
    fn name(&self) -> String {
        self.tenant()
            .map(|t| t.to_string())
            .unwrap_or_else(|| "platform".into())
    }
}

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

fn internal(what: &str, detail: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %detail, "audit: {what}");
    Problem::internal()
}

/// `domain.entity.action`: lower-case words joined by dots, at least two parts.
fn valid_type(kind: &str) -> bool {
    let parts: Vec<&str> = kind.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        })
}

/// Payloads carry ids, never an email address (DESIGN.md §2: hash it).
fn contains_email(value: &Value) -> bool {
    match value {
        Value::String(s) => kernel::Email::parse(s).is_ok(),
        Value::Array(items) => items.iter().any(contains_email),
        Value::Object(map) => map.values().any(contains_email),
        _ => false,
    }
}

/// The columns of a batch of events, for one `INSERT … SELECT FROM UNNEST`.
#[derive(Default)]
struct EventRows {
    seq: Vec<i64>,
    id: Vec<Uuid>,
    occurred_at: Vec<DateTime<Utc>>,
    kind: Vec<String>,
    actor_kind: Vec<String>,
    actor_id: Vec<Option<Uuid>>,
    source_agent: Vec<String>,
    resource_type: Vec<Option<String>>,
    resource_id: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    canonical: Vec<String>,
    hash_version: Vec<i16>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl EventRows {
    fn push(
        &mut self,
        f: Facts,
        occurred_at: DateTime<Utc>,
        canonical: String,
        prev_hash: Vec<u8>,
        hash: Vec<u8>,
    ) {
        self.seq.push(f.seq);
        self.id.push(f.id);
        self.occurred_at.push(occurred_at);
        self.kind.push(f.kind);
        self.actor_kind.push(f.actor_kind);
        self.actor_id.push(f.actor_id);
        self.source_agent.push(f.source_agent);
        self.resource_type.push(f.resource_type);
        self.resource_id.push(f.resource_id);
        self.request_id.push(f.request_id);
        self.canonical.push(canonical);
        self.hash_version.push(chain::HASH_VERSION);
        self.prev_hash.push(prev_hash);
        self.hash.push(hash);
    }
}

/// Appends a unit of work's events to its chain, inside its transaction.
pub(crate) async fn append(
    conn: &mut PgConnection,
    ctx: &TxContext,
    events: Vec<NewEvent>,
    keys: &Keys,
) -> Result<(), Problem> {
    let chain = Chain::of(ctx.scope);
    let t = chain.tables();
    sqlx::query(sql(format!(
        "INSERT INTO {} ({}) VALUES ($1) ON CONFLICT DO NOTHING",
        t.heads, t.key
    )))
    .bind(chain.key())
    .execute(&mut *conn)
    .await?;
    // The per-chain lock: only this tail of the transaction is serialised.
    let (mut seq, mut prev): (i64, Vec<u8>) = sqlx::query_as(sql(format!(
        "SELECT seq, hash FROM {} WHERE {} = $1 FOR UPDATE",
        t.heads, t.key
    )))
    .bind(chain.key())
    .fetch_one(&mut *conn)
    .await?;
    let request_id = Some(ctx.request_id.clone()).filter(|r| !r.is_empty());
    let mut rows = EventRows::default();
    let mut due = Vec::new();
    for event in events {
        if !valid_type(&event.kind) {
            return Err(internal(
                "event type is not domain.entity.action",
                &event.kind,
            ));
        }
        if !event.payload.is_object() || contains_email(&event.payload) {
            return Err(internal(
                "payload must be an object without email addresses",
                &event.kind,
            ));
        }
        seq += 1;
        let facts = Facts {
            seq,
            id: Uuid::now_v7(),
            tenant_id: chain.tenant(),
            occurred_at: timestamp(event.occurred_at),
            kind: event.kind,
            actor_kind: ctx.actor.kind().to_string(),
            actor_id: ctx.actor.id(),
            source_agent: ctx.source_agent.to_string(),
            resource_type: event.resource_type,
            resource_id: event.resource_id,
            request_id: request_id.clone(),
            payload: event.payload,
        };
        let canonical = facts
            .canonical()
            .map_err(|e| internal("cannot canonicalise", e))?;
        let hash = chain::hash(&prev, &canonical);
        if seq % CHECKPOINT_EVERY == 0 {
            due.push((seq, hash));
        }
        let prev_hash = std::mem::replace(&mut prev, hash.to_vec());
        rows.push(
            facts,
            event.occurred_at,
            canonical,
            prev_hash,
            hash.to_vec(),
        );
    }
    // One statement for the whole unit of work, however many events it recorded.
    sqlx::query(sql(format!(
        "INSERT INTO {} ({}, seq, id, occurred_at, type, actor_kind, actor_id, source_agent,
                        resource_type, resource_id, request_id, canonical, hash_version, prev_hash, hash)
         SELECT $1, * FROM UNNEST($2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[], $7::uuid[],
                                  $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int2[],
                                  $14::bytea[], $15::bytea[])",
        t.events, t.key
    )))
    .bind(chain.key())
    .bind(&rows.seq)
    .bind(&rows.id)
    .bind(&rows.occurred_at)
    .bind(&rows.kind)
    .bind(&rows.actor_kind)
    .bind(&rows.actor_id)
    .bind(&rows.source_agent)
    .bind(&rows.resource_type)
    .bind(&rows.resource_id)
    .bind(&rows.request_id)
    .bind(&rows.canonical)
    .bind(&rows.hash_version)
    .bind(&rows.prev_hash)
    .bind(&rows.hash)
    .execute(&mut *conn)
    .await?;
    if ctx.client_ip.is_some() || ctx.user_agent.is_some() {
        sqlx::query(sql(format!(
            "INSERT INTO {} ({}, event_id, ip, user_agent) SELECT $1, unnest($2::uuid[]), $3::inet, $4",
            t.clients, t.key
        )))
        .bind(chain.key())
        .bind(&rows.id)
        .bind(ctx.client_ip.map(|ip| ip.to_string()))
        .bind(&ctx.user_agent)
        .execute(&mut *conn)
        .await?;
    }
    for (seq, hash) in due {
        sign(conn, chain, seq, &hash, keys).await?;
    }
    sqlx::query(sql(format!(
        "UPDATE {} SET seq = $2, hash = $3, updated_at = now() WHERE {} = $1",
        t.heads, t.key
    )))
    .bind(chain.key())
    .bind(seq)
    .bind(&prev)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Signs a checkpoint of `chain` at (`seq`, `hash`), stores it and logs it.
async fn sign(
    conn: &mut PgConnection,
    chain: Chain,
    seq: i64,
    hash: &[u8],
    keys: &Keys,
) -> Result<(), Problem> {
    let t = chain.tables();
    let signed_at = Utc::now().trunc_subsecs(6);
    let key = keys.current();
    let message = signing::message(&key.key_id, &chain.name(), seq, hash, &timestamp(signed_at));
    let signature = key.sign(&message);
    let inserted = sqlx::query(sql(format!(
        "INSERT INTO {} ({}, seq, hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
        t.checkpoints, t.key
    )))
    .bind(chain.key())
    .bind(seq)
    .bind(hash)
    .bind(signed_at)
    .bind(&key.key_id)
    .bind(&signature)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        tracing::info!(
            target: "balance::audit",
            chain = %chain.name(),
            seq,
            hash = %hex(hash),
            signed_at = %timestamp(signed_at),
            key_id = %key.key_id,
            signature = %B64.encode(&signature),
            "audit checkpoint"
        );
    }
    Ok(())
}

/// Signs a checkpoint for every chain with events since its last one (the hourly tick).
/// Returns how many were signed.
pub async fn checkpoint_due(db: &Db, keys: &Keys) -> Result<u64, Problem> {
    let mut tx = SystemTx::begin(db, kernel::Actor::System).await?;
    let tenants: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
        .fetch_all(tx.conn())
        .await?;
    let mut signed = u64::from(checkpoint_if_due(tx.conn(), Chain::Platform, keys).await?);
    tx.commit().await?;
    for tenant in tenants {
        let mut tx =
            TenantTx::begin(db, TenantId::from_uuid(tenant), kernel::Actor::System).await?;
        signed += u64::from(checkpoint_if_due(tx.conn(), Chain::Tenant(tenant), keys).await?);
        tx.commit().await?;
    }
    Ok(signed)
}

async fn checkpoint_if_due(
    conn: &mut PgConnection,
    chain: Chain,
    keys: &Keys,
) -> Result<bool, Problem> {
    let t = chain.tables();
    let head: Option<(i64, Vec<u8>)> = sqlx::query_as(sql(format!(
        "SELECT seq, hash FROM {} WHERE {} = $1",
        t.heads, t.key
    )))
    .bind(chain.key())
    .fetch_optional(&mut *conn)
    .await?;
    let Some((seq, hash)) = head.filter(|(seq, _)| *seq > 0) else {
        return Ok(false);
    };
    let last: Option<i64> = sqlx::query_scalar(sql(format!(
        "SELECT max(seq) FROM {} WHERE {} = $1",
        t.checkpoints, t.key
    )))
    .bind(chain.key())
    .fetch_one(&mut *conn)
    .await?;
    if last.is_some_and(|l| l >= seq) {
        return Ok(false);
    }
    sign(conn, chain, seq, &hash, keys).await?;
    Ok(true)
}

/// `seq, hash, signed_at, key_id, signature`.
type CheckpointRow = (i64, Vec<u8>, DateTime<Utc>, String, Vec<u8>);
/// `seq, canonical, hash_version, prev_hash, hash`.
type ExportRow = (i64, String, i16, Vec<u8>, Vec<u8>);

async fn checkpoints(conn: &mut PgConnection, chain: Chain) -> Result<Vec<Checkpoint>, Problem> {
    let t = chain.tables();
    let rows: Vec<CheckpointRow> = sqlx::query_as(sql(format!(
        "SELECT seq, hash, signed_at, key_id, signature FROM {} WHERE {} = $1 ORDER BY seq",
        t.checkpoints, t.key
    )))
    .bind(chain.key())
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, hash, signed_at, key_id, signature)| Checkpoint {
            seq,
            hash: hex(&hash),
            signed_at: timestamp(signed_at),
            key_id,
            signature: B64.encode(signature),
        })
        .collect())
}

const EVENT_COLUMNS: &str =
    "seq, id, occurred_at, type, actor_kind, actor_id, source_agent, resource_type, resource_id,
                             request_id, canonical, hash_version, prev_hash, hash";

fn columns_of(row: &sqlx::postgres::PgRow, chain: Chain) -> Result<Facts, sqlx::Error> {
    Ok(Facts {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        tenant_id: chain.tenant(),
        occurred_at: timestamp(row.try_get("occurred_at")?),
        kind: row.try_get("type")?,
        actor_kind: row.try_get("actor_kind")?,
        actor_id: row.try_get("actor_id")?,
        source_agent: row.try_get("source_agent")?,
        resource_type: row.try_get("resource_type")?,
        resource_id: row.try_get("resource_id")?,
        request_id: row.try_get("request_id")?,
        payload: Value::Null,
    })
}

/// Checks the whole chain of `chain` in `seq` order, streaming (constant memory).
async fn verify_chain(
    conn: &mut PgConnection,
    chain: Chain,
    keys: Vec<signing::PublicKey>,
) -> Result<Verification, Problem> {
    let t = chain.tables();
    let cps = checkpoints(conn, chain).await?;
    let head: Option<(i64, Vec<u8>)> = sqlx::query_as(sql(format!(
        "SELECT seq, hash FROM {} WHERE {} = $1",
        t.heads, t.key
    )))
    .bind(chain.key())
    .fetch_optional(&mut *conn)
    .await?;
    let mut verifier = Verifier::new(chain.tenant(), keys, cps);
    let query = format!(
        "SELECT {EVENT_COLUMNS} FROM {} WHERE {} = $1 ORDER BY seq",
        t.events, t.key
    );
    let mut rows = sqlx::query(sql(query)).bind(chain.key()).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let columns = columns_of(&row, chain)?;
        let canonical: String = row.try_get("canonical")?;
        let prev_hash: Vec<u8> = row.try_get("prev_hash")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        verifier.event(StoredEvent {
            seq: columns.seq,
            canonical: &canonical,
            hash_version: row.try_get("hash_version")?,
            prev_hash: &prev_hash,
            hash: &hash,
            columns: Some(&columns),
        });
    }
    Ok(verifier.finish(Some(head.unwrap_or((0, chain::GENESIS.to_vec())))))
}

/// A tenant's signed checkpoints, oldest first.
pub async fn list_checkpoints(tx: &mut TenantTx) -> Result<Vec<Checkpoint>, Problem> {
    let chain = Chain::Tenant(tx.tenant_id().as_uuid());
    checkpoints(tx.conn(), chain).await
}

/// Verifies a tenant's chain and its checkpoints.
pub async fn verify(
    tx: &mut TenantTx,
    keys: Vec<signing::PublicKey>,
) -> Result<Verification, Problem> {
    let chain = Chain::Tenant(tx.tenant_id().as_uuid());
    verify_chain(tx.conn(), chain, keys).await
}

/// Verifies the platform chain and its checkpoints.
pub async fn verify_platform(
    tx: &mut SystemTx,
    keys: Vec<signing::PublicKey>,
) -> Result<Verification, Problem> {
    verify_chain(tx.conn(), Chain::Platform, keys).await
}

/// Filters of the event list; every one is optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub actor_id: Option<Uuid>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// The parts that identify the query, for its cursors.
    pub fn query_parts(&self) -> Vec<String> {
        vec![
            self.kind.clone().unwrap_or_default(),
            self.actor_id.map(|a| a.to_string()).unwrap_or_default(),
            self.resource_type.clone().unwrap_or_default(),
            self.resource_id.clone().unwrap_or_default(),
            self.from.map(timestamp).unwrap_or_default(),
            self.to.map(timestamp).unwrap_or_default(),
        ]
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct EventActor {
    /// `user`, `api_key`, `system` or `telegram`.
    pub kind: String,
    pub id: Option<Uuid>,
}

/// An event of the audit log (API.md, Events).
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename = "Event")]
pub struct EventView {
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    #[oai(rename = "type")]
    pub kind: String,
    pub actor: EventActor,
    /// The component that acted: `balance`, `worker`, `bot`, `cli`.
    pub source_agent: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub payload: Value,
    /// Lower-case hex.
    pub prev_hash: String,
    /// Lower-case hex.
    pub hash: String,
}

/// A page of a tenant's events, newest first, after `params`' cursor (keyset on `seq`).
pub async fn list(
    tx: &mut TenantTx,
    filter: &EventFilter,
    params: &PageParams,
) -> Result<Vec<EventView>, Problem> {
    let before: Option<i64> = params.after.as_ref().and_then(|p| p.key.as_i64());
    let rows = sqlx::query(
        "SELECT e.seq, e.id, e.occurred_at, e.type, e.actor_kind, e.actor_id, e.source_agent, e.resource_type,
                e.resource_id, e.request_id, e.canonical, e.prev_hash, e.hash, host(c.ip) AS ip, c.user_agent
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
         LIMIT $9",
    )
    .bind(tx.tenant_id())
    .bind(&filter.kind)
    .bind(filter.actor_id)
    .bind(&filter.resource_type)
    .bind(&filter.resource_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(before)
    .bind(params.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    rows.iter()
        .map(|row| {
            let canonical: String = row.try_get("canonical")?;
            let payload = Facts::parse(&canonical)
                .map(|f| f.payload)
                .unwrap_or(Value::Null);
            Ok(EventView {
                seq: row.try_get("seq")?,
                id: row.try_get("id")?,
                occurred_at: row.try_get("occurred_at")?,
                kind: row.try_get("type")?,
                actor: EventActor {
                    kind: row.try_get("actor_kind")?,
                    id: row.try_get("actor_id")?,
                },
                source_agent: row.try_get("source_agent")?,
                resource_type: row.try_get("resource_type")?,
                resource_id: row.try_get("resource_id")?,
                request_id: row.try_get("request_id")?,
                ip: row.try_get("ip")?,
                user_agent: row.try_get("user_agent")?,
                payload,
                prev_hash: hex(&row.try_get::<Vec<u8>, _>("prev_hash")?),
                hash: hex(&row.try_get::<Vec<u8>, _>("hash")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(Problem::from)
}

const EXPORT_BATCH: i64 = 1_000;

enum ExportState {
    Start(TenantTx),
    Events {
        tx: TenantTx,
        after: i64,
        until: i64,
    },
    Done,
}

/// The tenant's chain as NDJSON, streamed in batches (constant memory): a header line, the
/// checkpoints, then every event with its canonical text and both hashes. It verifies
/// offline with `balance audit verify --file … --keys …`.
pub fn export(tx: TenantTx) -> impl Stream<Item = Result<String, Problem>> + Send {
    futures_util::stream::try_unfold(ExportState::Start(tx), |state| async move {
        match state {
            ExportState::Done => Ok(None),
            ExportState::Start(mut tx) => {
                let tenant = tx.tenant_id().as_uuid();
                let chain = Chain::Tenant(tenant);
                let until: i64 = sqlx::query_scalar(
                    "SELECT coalesce(max(seq), 0) FROM audit_heads WHERE tenant_id = $1",
                )
                .bind(tenant)
                .fetch_one(tx.conn())
                .await?;
                let mut out = json!({
                    "kind": "header",
                    "format": "balance-audit-export-v1",
                    "tenant_id": tenant,
                    "last_seq": until,
                    "exported_at": timestamp(Utc::now()),
                })
                .to_string();
                out.push('\n');
                for cp in checkpoints(tx.conn(), chain).await? {
                    let mut line = serde_json::to_value(&cp).map_err(|e| internal("export", e))?;
                    line["kind"] = json!("checkpoint");
                    out.push_str(&line.to_string());
                    out.push('\n');
                }
                Ok(Some((
                    out,
                    ExportState::Events {
                        tx,
                        after: 0,
                        until,
                    },
                )))
            }
            ExportState::Events {
                mut tx,
                after,
                until,
            } => {
                if after >= until {
                    tx.commit().await?;
                    return Ok(None);
                }
                let rows: Vec<ExportRow> = sqlx::query_as(
                    "SELECT seq, canonical, hash_version, prev_hash, hash FROM events
                     WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
                )
                .bind(tx.tenant_id())
                .bind(after)
                .bind(until)
                .bind(EXPORT_BATCH)
                .fetch_all(tx.conn())
                .await?;
                let Some(last) = rows.last().map(|r| r.0) else {
                    tx.commit().await?;
                    return Ok(Some((String::new(), ExportState::Done)));
                };
                let mut out = String::with_capacity(rows.len() * 512);
                for (seq, canonical, hash_version, prev_hash, hash) in rows {
                    out.push_str(
                        &json!({
                            "kind": "event",
                            "seq": seq,
                            "hash_version": hash_version,
                            "canonical": canonical,
                            "prev_hash": hex(&prev_hash),
                            "hash": hex(&hash),
                        })
                        .to_string(),
                    );
                    out.push('\n');
                }
                Ok(Some((
                    out,
                    ExportState::Events {
                        tx,
                        after: last,
                        until,
                    },
                )))
            }
        }
    })
}

/// Verifies an NDJSON export offline against the public keys.
pub fn verify_export(
    reader: impl BufRead,
    keys: Vec<signing::PublicKey>,
) -> Result<Verification, String> {
    let mut lines = reader.lines().enumerate();
    let (_, header) = lines.next().ok_or("the export is empty")?;
    let header: Value = serde_json::from_str(&header.map_err(|e| e.to_string())?)
        .map_err(|e| format!("line 1: {e}"))?;
    if header["format"] != "balance-audit-export-v1" {
        return Err("line 1 is not a balance-audit-export-v1 header".into());
    }
    let tenant: Option<Uuid> = header["tenant_id"].as_str().and_then(|t| t.parse().ok());
    let last_seq = header["last_seq"]
        .as_i64()
        .ok_or("the header has no last_seq")?;
    let mut verifier: Option<Verifier> = None;
    let mut cps = Vec::new();
    for (i, line) in lines {
        let line = line.map_err(|e| e.to_string())?;
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", i + 1))?;
        match v["kind"].as_str() {
            Some("checkpoint") if verifier.is_none() => cps.push(
                serde_json::from_value::<Checkpoint>(v)
                    .map_err(|e| format!("line {}: {e}", i + 1))?,
            ),
            Some("event") => {
                let verifier = verifier.get_or_insert_with(|| {
                    Verifier::new(tenant, keys.clone(), std::mem::take(&mut cps))
                });
                let field = |name: &str| {
                    v[name]
                        .as_str()
                        .and_then(kernel::hex::decode)
                        .ok_or(format!("line {}: bad {name}", i + 1))
                };
                let (prev_hash, hash) = (field("prev_hash")?, field("hash")?);
                verifier.event(StoredEvent {
                    seq: v["seq"].as_i64().ok_or(format!("line {}: no seq", i + 1))?,
                    canonical: v["canonical"]
                        .as_str()
                        .ok_or(format!("line {}: no canonical", i + 1))?,
                    hash_version: v["hash_version"].as_i64().unwrap_or(0) as i16,
                    prev_hash: &prev_hash,
                    hash: &hash,
                    columns: None,
                });
            }
            _ => return Err(format!("line {}: unexpected record", i + 1)),
        }
    }
    let verifier = verifier.unwrap_or_else(|| Verifier::new(tenant, keys, cps));
    let mut result = verifier.finish(None);
    if result.ok && result.checked as i64 != last_seq {
        result.ok = false;
        result.first_bad_seq = Some(result.checked as i64 + 1);
        result.reason = Some(format!(
            "the header says {last_seq} events, the export holds {}",
            result.checked
        ));
    }
    Ok(result)
}
