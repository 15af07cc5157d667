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
    pub queues: Vec<jobs::Queue>,
}

/// The hourly checkpoint of every audit chain with new events.
pub const AUDIT_CHECKPOINT: &str = "audit.checkpoint";

/// Every migration of the platform: ours (as the owner), then the job queue's schema.
pub async fn migrate(owner_url: &str, runtime_url: &str) -> anyhow::Result<()> {
    kernel::migrate::migrate(owner_url, runtime_url).await?;
    jobs::setup(owner_url).await?;
    Ok(())
}

/// What, besides `migrations/`, shapes a migrated database (for test templates).
pub const SCHEMA_SALT: &str = jobs::SCHEMA_SALT;

impl Platform {
    pub fn new(config: &Config, pool: PgPool) -> anyhow::Result<Platform> {
        let audit = audit::AuditLog::new(audit_keys(config)?);
        let queues = jobs::default_queues();
        // At commit: the unit of work's audit events, then its job pushes, then COMMIT.
        let db = Db::new(pool.clone())
            .with_hook(Arc::new(audit.clone()))
            .with_hook(Arc::new(jobs::JobsHook::new(&queues)));
        Ok(Platform {
            pool,
            db,
            audit,
            cursors: config.keys.cursor_signer(),
            queues,
        })
    }

    /// The job runner with every handler and cron schedule of the platform.
    pub fn runner(&self, config: jobs::RunnerConfig) -> jobs::Runner {
        let audit = self.audit.clone();
        let registry = jobs::Registry::default().handle(AUDIT_CHECKPOINT, move |job| {
            let audit = audit.clone();
            async move {
                let signed = audit::checkpoint_due(&job.db, audit.keys()).await?;
                tracing::info!(signed, "audit checkpoints");
                Ok(())
            }
        });
        jobs::Runner::new(
            self.pool.clone(),
            self.db.clone(),
            registry,
            self.queues.clone(),
            config,
        )
        .cron(jobs::CronJob {
            name: "audit-checkpoints",
            schedule: "0 0 * * * *",
            job: || jobs::NewJob::new("system", AUDIT_CHECKPOINT, serde_json::json!({})),
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
