//! The platform's shared services, built once from configuration and handed to the
//! modules: the database handle (with the audit log installed as a commit hook), the
//! audit log, the cursor signer.

use std::sync::Arc;

use kernel::{CursorSigner, Db};
use sqlx::PgPool;

use crate::config::Config;

/// Everything the product API and the workers are built from.
#[derive(Clone)]
pub struct Platform {
    /// The runtime pool, for readiness only; modules get [`Platform::db`].
    pub pool: PgPool,
    pub db: Db,
    pub audit: audit::AuditLog,
    pub cursors: CursorSigner,
}

impl Platform {
    pub fn new(config: &Config, pool: PgPool) -> anyhow::Result<Platform> {
        let audit = audit::AuditLog::new(audit_keys(config)?);
        let db = Db::new(pool.clone()).with_hook(Arc::new(audit.clone()));
        Ok(Platform {
            pool,
            db,
            audit,
            cursors: config.keys.cursor_signer(),
        })
    }
}

/// The audit signing keys of the configuration.
pub fn audit_keys(config: &Config) -> anyhow::Result<audit::Keys> {
    Ok(audit::Keys::from_seeds(
        config
            .keys
            .audit_signing
            .keys
            .iter()
            .map(|(id, seed)| (id.as_str(), seed.expose().as_slice())),
    )?)
}
