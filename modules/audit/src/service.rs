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
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    CHECKPOINT_EVERY, Keys, NewEvent,
    chain::{self, Checkpoint, Facts, StoredEvent, Verification, Verifier},
    signing, store, timestamp,
};

/// Which chain: a tenant's, or the platform's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chain {
    Tenant(Uuid),
    Platform,
}

impl Chain {
    fn of(scope: Scope) -> Chain {
        match scope {
            Scope::Tenant(t) => Chain::Tenant(t.as_uuid()),
            Scope::User(_) | Scope::System => Chain::Platform,
        }
    }

    /// The value of the key column: the tenant, or the platform chain's constant id.
    pub(crate) fn key(&self) -> Uuid {
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

fn internal(what: &str, detail: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %detail, "audit: {what}");
    Problem::internal().with_cause(std::io::Error::other(format!("audit: {what}: {detail}")))
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
pub(crate) struct EventRows {
    pub seq: Vec<i64>,
    pub id: Vec<Uuid>,
    pub occurred_at: Vec<DateTime<Utc>>,
    pub kind: Vec<String>,
    pub actor_kind: Vec<String>,
    pub actor_id: Vec<Option<Uuid>>,
    pub source_agent: Vec<String>,
    pub resource_type: Vec<Option<String>>,
    pub resource_id: Vec<Option<String>>,
    pub request_id: Vec<Option<String>>,
    pub canonical: Vec<String>,
    pub hash_version: Vec<i16>,
    pub prev_hash: Vec<Vec<u8>>,
    pub hash: Vec<Vec<u8>>,
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
    store::ensure_head(conn, chain).await?;
    // The per-chain lock: only this tail of the transaction is serialised.
    let store::Head {
        mut seq,
        hash: mut prev,
    } = store::lock_head(conn, chain).await?;
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
    store::insert_events(conn, chain, &rows).await?;
    if ctx.client_ip.is_some() || ctx.user_agent.is_some() {
        store::insert_clients(
            conn,
            chain,
            &rows.id,
            ctx.client_ip.map(|ip| ip.to_string()),
            ctx.user_agent.as_deref(),
        )
        .await?;
    }
    for (seq, hash) in due {
        sign(conn, chain, seq, &hash, keys).await?;
    }
    store::update_head(conn, chain, seq, &prev).await?;
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
    let signed_at = Utc::now().trunc_subsecs(6);
    let key = keys.current();
    let message = signing::message(&key.key_id, &chain.name(), seq, hash, &timestamp(signed_at));
    let signature = key.sign(&message);
    let checkpoint = store::CheckpointRow {
        seq,
        hash: hash.to_vec(),
        signed_at,
        key_id: key.key_id.clone(),
        signature: signature.to_vec(),
    };
    if store::insert_checkpoint(conn, chain, &checkpoint).await? {
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
    let tenants = store::tenant_ids(tx.conn()).await?;
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
    let Some(store::Head { seq, hash }) = store::head(conn, chain).await?.filter(|h| h.seq > 0)
    else {
        return Ok(false);
    };
    let last = store::last_checkpoint(conn, chain).await?;
    if last.is_some_and(|l| l >= seq) {
        return Ok(false);
    }
    sign(conn, chain, seq, &hash, keys).await?;
    Ok(true)
}

async fn checkpoints(conn: &mut PgConnection, chain: Chain) -> Result<Vec<Checkpoint>, Problem> {
    Ok(store::checkpoints(conn, chain)
        .await?
        .into_iter()
        .map(|cp| Checkpoint {
            seq: cp.seq,
            hash: hex(&cp.hash),
            signed_at: timestamp(cp.signed_at),
            key_id: cp.key_id,
            signature: B64.encode(cp.signature),
        })
        .collect())
}

/// Checks the whole chain of `chain` in `seq` order, streaming (constant memory).
async fn verify_chain(
    conn: &mut PgConnection,
    chain: Chain,
    keys: Vec<signing::PublicKey>,
) -> Result<Verification, Problem> {
    let cps = checkpoints(conn, chain).await?;
    let head = store::head(conn, chain)
        .await?
        .map(|h| (h.seq, h.hash))
        .unwrap_or((0, chain::GENESIS.to_vec()));
    let mut verifier = Verifier::new(chain.tenant(), keys, cps);
    let mut rows = store::chain_events(conn, chain);
    while let Some(row) = rows.try_next().await? {
        let columns = Facts {
            seq: row.seq,
            id: row.id,
            tenant_id: chain.tenant(),
            occurred_at: timestamp(row.occurred_at),
            kind: row.kind,
            actor_kind: row.actor_kind,
            actor_id: row.actor_id,
            source_agent: row.source_agent,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            request_id: row.request_id,
            payload: Value::Null,
        };
        verifier.event(StoredEvent {
            seq: columns.seq,
            canonical: &row.canonical,
            hash_version: row.hash_version,
            prev_hash: &row.prev_hash,
            hash: &row.hash,
            columns: Some(&columns),
        });
    }
    Ok(verifier.finish(Some(head)))
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
    let tenant = tx.tenant_id().as_uuid();
    let rows = store::list_events(tx.conn(), tenant, filter, before, params.fetch_limit()).await?;
    Ok(rows
        .into_iter()
        .map(|row| EventView {
            payload: Facts::parse(&row.canonical)
                .map(|f| f.payload)
                .unwrap_or(Value::Null),
            seq: row.seq,
            id: row.id,
            occurred_at: row.occurred_at,
            kind: row.kind,
            actor: EventActor {
                kind: row.actor_kind,
                id: row.actor_id,
            },
            source_agent: row.source_agent,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            request_id: row.request_id,
            ip: row.ip,
            user_agent: row.user_agent,
            prev_hash: hex(&row.prev_hash),
            hash: hex(&row.hash),
        })
        .collect())
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
                let until = store::last_seq(tx.conn(), tenant).await?;
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
                let tenant = tx.tenant_id().as_uuid();
                let rows =
                    store::export_batch(tx.conn(), tenant, after, until, EXPORT_BATCH).await?;
                let Some(last) = rows.last().map(|r| r.seq) else {
                    tx.commit().await?;
                    return Ok(Some((String::new(), ExportState::Done)));
                };
                let mut out = String::with_capacity(rows.len() * 512);
                for row in rows {
                    out.push_str(
                        &json!({
                            "kind": "event",
                            "seq": row.seq,
                            "hash_version": row.hash_version,
                            "canonical": row.canonical,
                            "prev_hash": hex(&row.prev_hash),
                            "hash": hex(&row.hash),
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
