//! Sealed API-key replays under the vault's key rotation (`balance keys reencrypt`).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use futures_util::future::BoxFuture;
use kernel::{Problem, Tx};
use uuid::Uuid;
use vault::{
    Vault,
    rotation::{Batch, Ciphertexts, Scope, tenant_of},
};

use crate::{Tenancy, store};

/// The secrets of created API keys kept sealed in their `Idempotency-Key` replay for 24 h,
/// each bound to its tenant and key (`api_key.replay:<tenant>:<key id>`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiKeyReplays;

impl Ciphertexts for ApiKeyReplays {
    fn kind(&self) -> &'static str {
        "api_key_replays"
    }

    fn scope(&self) -> Scope {
        Scope::Tenant
    }

    fn reseal<'a>(
        &'a self,
        tx: &'a mut dyn Tx,
        vault: &'a Vault,
        after: Option<String>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Batch, Problem>> {
        Box::pin(async move {
            let tenant = tenant_of(tx)?;
            let first = vault.first_key_id().as_bytes();
            let after = after.unwrap_or_default();
            let rows = store::replays_not_under(tx.conn(), tenant, first, &after, limit).await?;
            let mut batch = Batch::default();
            for row in &rows {
                let opened = (|| {
                    let id: Uuid = row.api_key_id.as_deref()?.parse().ok()?;
                    let sealed = B64.decode(row.sealed_secret.as_deref()?).ok()?;
                    vault.reseal(&sealed, &Tenancy::replay_aad(tenant, id)).ok()
                })();
                match opened {
                    Some(Some(new)) => {
                        let old = row.sealed_secret.as_deref().unwrap_or_default();
                        if store::reseal_replay(tx.conn(), tenant, &row.key, old, &B64.encode(new))
                            .await?
                        {
                            batch.resealed += 1;
                        }
                    }
                    Some(None) => {}
                    None => {
                        tracing::warn!(%tenant, "a sealed API-key replay does not open: left as it is");
                        batch.unreadable += 1;
                    }
                }
            }
            if rows.len() as i64 == limit {
                batch.next = rows.last().map(|r| r.key.clone());
            }
            Ok(batch)
        })
    }

    fn count<'a>(
        &'a self,
        tx: &'a mut dyn Tx,
        key_id: &'a str,
        under: bool,
    ) -> BoxFuture<'a, Result<i64, Problem>> {
        Box::pin(async move {
            let tenant = tenant_of(tx)?;
            Ok(store::count_replays(tx.conn(), tenant, key_id.as_bytes(), under).await?)
        })
    }
}
