//! Provider tokens under the vault's key rotation (`balance keys reencrypt`).

use audit::{NewEvent, Record};
use futures_util::future::BoxFuture;
use kernel::{Problem, Tx};
use uuid::Uuid;
use vault::{
    Vault,
    rotation::{Batch, Ciphertexts, Scope, tenant_of},
};

use crate::{Banking, store};

/// The connections' sealed provider tokens, each bound to its tenant, connection and item.
#[derive(Clone)]
pub struct BankTokens(pub Banking);

impl Ciphertexts for BankTokens {
    fn kind(&self) -> &'static str {
        "bank_tokens"
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
            let after = after.and_then(|a| a.parse().ok()).unwrap_or(Uuid::nil());
            let first = vault.first_key_id().as_bytes();
            let rows = store::tokens_not_under(tx.conn(), tenant, first, after, limit).await?;
            let mut batch = Batch::default();
            for row in &rows {
                match self.0.reseal(vault, tenant, row) {
                    Ok(Some(new)) => {
                        if store::reseal_token(
                            tx.conn(),
                            tenant,
                            row.id,
                            &row.token_ciphertext,
                            &new,
                        )
                        .await?
                        {
                            batch.resealed += 1;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(connection_id = %row.id, error = %e, "a bank token does not open: left as it is");
                        batch.unreadable += 1;
                    }
                }
            }
            if batch.resealed > 0 {
                tx.record(
                    NewEvent::new("bank.tokens_reencrypted").payload(serde_json::json!({
                        "key_id": vault.first_key_id(),
                        "resealed": batch.resealed,
                    })),
                );
            }
            if rows.len() as i64 == limit {
                batch.next = rows.last().map(|r| r.id.to_string());
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
            Ok(store::count_tokens(tx.conn(), tenant, key_id.as_bytes(), under).await?)
        })
    }
}
