//! Key rotation as operators run it (runbooks/key-rotation.md): a new key is deployed second
//! (every instance can open what it seals), then promoted first (new ciphertexts use it);
//! [`reencrypt`] then re-seals every ciphertext still under another key, and
//! [`check_retire`] says whether a key still opens anything before it is removed.
//!
//! Each module that keeps ciphertexts says where they are by implementing [`Ciphertexts`]
//! over its own table (identity: TOTP secrets; tenancy: sealed API-key replays; banking:
//! provider tokens). A row is re-sealed in its own statement, compared on its old
//! ciphertext, so a row is readable at every moment (both keys are in the ring) and a row
//! changed meanwhile is simply left for the next pass. The walk goes by key order and
//! selects only rows under other keys, so an interrupted run resumes where it stopped and
//! a finished one finds nothing to do.

use futures_util::future::BoxFuture;
use kernel::{Actor, Db, Problem, SystemTx, TenantId, TenantTx, Tx};

use crate::Vault;

/// Whether a kind of ciphertext lives in a global table or in each tenant's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Walked in batches in a [`SystemTx`].
    Global,
    /// Walked tenant by tenant, each in its own [`TenantTx`] (under row-level security).
    Tenant,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Re-sealed under the first key.
    pub resealed: u64,
    /// Could not be opened (a key no longer in the ring, or tampered): left as they are,
    /// named in the log by row, counted in the summary.
    pub unreadable: u64,
    /// Where the next batch starts; `None` when this scope is done.
    pub next: Option<String>,
}

/// A kind of ciphertext one module keeps.
pub trait Ciphertexts: Send + Sync + 'static {
    /// Names the kind in progress, the summary and `check-retire` (`totp_secrets`).
    fn kind(&self) -> &'static str;

    fn scope(&self) -> Scope;

    /// Re-seals up to `limit` rows not under `vault`'s first key, from `after` (the `next`
    /// of the previous batch; `None` to start). For a [`Scope::Tenant`] kind `tx` is the
    /// tenant's, and one call may take all of the tenant's rows.
    fn reseal<'a>(
        &'a self,
        tx: &'a mut dyn Tx,
        vault: &'a Vault,
        after: Option<String>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Batch, Problem>>;

    /// How many rows are sealed under `key_id` (`under`), or under any other key.
    fn count<'a>(
        &'a self,
        tx: &'a mut dyn Tx,
        key_id: &'a str,
        under: bool,
    ) -> BoxFuture<'a, Result<i64, Problem>>;
}

/// The tenant of a [`Scope::Tenant`] kind's transaction.
pub fn tenant_of(tx: &dyn Tx) -> Result<TenantId, Problem> {
    match tx.context().scope {
        kernel::Scope::Tenant(tenant) => Ok(tenant),
        _ => Err(Problem::internal()),
    }
}

/// What a whole re-encryption did, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// The key everything is now sealed under.
    pub key_id: String,
    /// `(kind, re-sealed, unreadable)`.
    pub kinds: Vec<(String, u64, u64)>,
    /// Tenants whose rows were walked.
    pub tenants: u64,
}

impl Summary {
    pub fn resealed(&self) -> u64 {
        self.kinds.iter().map(|(_, n, _)| n).sum()
    }
    pub fn unreadable(&self) -> u64 {
        self.kinds.iter().map(|(_, _, n)| n).sum()
    }
}

/// Rows one global batch takes.
const BATCH: i64 = 500;

/// Re-seals every ciphertext of `kinds` under the vault's first key. `progress` hears the
/// share done (0–1) after every batch. One summary event goes to the platform audit chain
/// (`vault.reencrypted`); each module writes its own tenant events when it wants them.
pub async fn reencrypt(
    db: &Db,
    vault: &Vault,
    kinds: &[std::sync::Arc<dyn Ciphertexts>],
    mut progress: impl FnMut(f32),
) -> Result<Summary, Problem> {
    let first = vault.first_key_id().to_string();
    let tenants = all_tenants(db).await?;
    // The work to do, counted once to report progress against.
    let mut total: i64 = 0;
    for kind in kinds {
        total += count_all(db, kind.as_ref(), &tenants, &first, false).await?;
    }
    let total = total.max(1) as f32;
    let mut done: u64 = 0;
    let mut summary = Summary {
        key_id: first.clone(),
        tenants: tenants.len() as u64,
        ..Summary::default()
    };
    for kind in kinds {
        let (mut resealed, mut unreadable) = (0u64, 0u64);
        match kind.scope() {
            Scope::Global => {
                let mut after = None;
                loop {
                    let mut tx = SystemTx::begin(db, Actor::System).await?;
                    let batch = kind.reseal(&mut tx, vault, after, BATCH).await?;
                    tx.commit().await?;
                    resealed += batch.resealed;
                    unreadable += batch.unreadable;
                    done += batch.resealed + batch.unreadable;
                    progress((done as f32 / total).min(1.0));
                    match batch.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
            }
            Scope::Tenant => {
                for tenant in &tenants {
                    let mut after = None;
                    loop {
                        let mut tx = TenantTx::begin(db, *tenant, Actor::System).await?;
                        let batch = kind.reseal(&mut tx, vault, after, BATCH).await?;
                        tx.commit().await?;
                        resealed += batch.resealed;
                        unreadable += batch.unreadable;
                        done += batch.resealed + batch.unreadable;
                        match batch.next {
                            Some(next) => after = Some(next),
                            None => break,
                        }
                    }
                    progress((done as f32 / total).min(1.0));
                }
            }
        }
        summary
            .kinds
            .push((kind.kind().to_string(), resealed, unreadable));
    }
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    audit::Record::record(
        &mut tx,
        audit::NewEvent::new("vault.reencrypted").payload(serde_json::json!({
            "key_id": summary.key_id,
            "tenants": summary.tenants,
            "kinds": summary.kinds.iter().map(|(kind, resealed, unreadable)| serde_json::json!({
                "kind": kind, "resealed": resealed, "unreadable": unreadable,
            })).collect::<Vec<_>>(),
        })),
    );
    tx.commit().await?;
    progress(1.0);
    Ok(summary)
}

/// How many ciphertexts of each kind still use `key_id`: a key may be removed from the
/// ring only when every count is 0.
pub async fn check_retire(
    db: &Db,
    kinds: &[std::sync::Arc<dyn Ciphertexts>],
    key_id: &str,
) -> Result<Vec<(String, i64)>, Problem> {
    let tenants = all_tenants(db).await?;
    let mut out = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let n = count_all(db, kind.as_ref(), &tenants, key_id, true).await?;
        out.push((kind.kind().to_string(), n));
    }
    Ok(out)
}

async fn count_all(
    db: &Db,
    kind: &dyn Ciphertexts,
    tenants: &[TenantId],
    key_id: &str,
    under: bool,
) -> Result<i64, Problem> {
    match kind.scope() {
        Scope::Global => {
            let mut tx = SystemTx::begin(db, Actor::System).await?;
            let n = kind.count(&mut tx, key_id, under).await?;
            tx.rollback().await?;
            Ok(n)
        }
        Scope::Tenant => {
            let mut n = 0;
            for tenant in tenants {
                let mut tx = TenantTx::begin(db, *tenant, Actor::System).await?;
                n += kind.count(&mut tx, key_id, under).await?;
                tx.rollback().await?;
            }
            Ok(n)
        }
    }
}

/// Every tenant, deleted ones included (their rows stay until they are purged).
async fn all_tenants(db: &Db) -> Result<Vec<TenantId>, Problem> {
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    let ids = sqlx::query_scalar!("SELECT id FROM tenants ORDER BY id")
        .fetch_all(tx.conn())
        .await?;
    tx.rollback().await?;
    Ok(ids.into_iter().map(TenantId::from_uuid).collect())
}
