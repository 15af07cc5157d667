//! TOTP secrets under the vault's key rotation (`balance keys reencrypt`).

use futures_util::future::BoxFuture;
use kernel::{Problem, Tx, UserId};
use uuid::Uuid;
use vault::{
    Vault,
    rotation::{Batch, Ciphertexts, Scope},
};

use crate::{Identity, store};

/// The `user_totp` secrets: global rows, each bound to its user (`user_totp:<user id>`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TotpSecrets;

impl Ciphertexts for TotpSecrets {
    fn kind(&self) -> &'static str {
        "totp_secrets"
    }

    fn scope(&self) -> Scope {
        Scope::Global
    }

    fn reseal<'a>(
        &'a self,
        tx: &'a mut dyn Tx,
        vault: &'a Vault,
        after: Option<String>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Batch, Problem>> {
        Box::pin(async move {
            let after = after
                .and_then(|a| a.parse::<Uuid>().ok())
                .unwrap_or(Uuid::nil());
            let first = vault.first_key_id().as_bytes();
            let rows = store::totp_not_under(tx.conn(), first, after, limit).await?;
            let mut batch = Batch::default();
            for row in &rows {
                let aad = Identity::aad(UserId::from_uuid(row.user_id));
                match vault.reseal(&row.secret_ciphertext, &aad) {
                    Ok(Some(new)) => {
                        if store::reseal_totp(tx.conn(), row.user_id, &row.secret_ciphertext, &new)
                            .await?
                        {
                            batch.resealed += 1;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(user_id = %row.user_id, error = %e, "a TOTP secret does not open: left as it is");
                        batch.unreadable += 1;
                    }
                }
            }
            if rows.len() as i64 == limit {
                batch.next = rows.last().map(|r| r.user_id.to_string());
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
        Box::pin(async move { Ok(store::count_totp(tx.conn(), key_id.as_bytes(), under).await?) })
    }
}
