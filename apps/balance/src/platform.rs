//! The platform's shared services, built once from configuration and handed to the
//! modules: the database handle (with the audit log and the job outbox installed as commit
//! hooks), the audit log, identity, mail, the cursor signer, the job queues.

use std::sync::Arc;

use kernel::{CursorSigner, Db};
use sqlx::PgPool;

use crate::config::Config;

/// Everything the product API and the workers are built from.
#[derive(Clone)]
pub struct Platform {
    /// The runtime pool, for readiness only; modules get [`Platform::db`].
    pub pool: PgPool,
    /// The pool for long-lived LISTEN connections (each queue's worker, the policy
    /// listener), which must never starve the requests' pool.
    pub jobs_pool: PgPool,
    pub db: Db,
    pub audit: audit::AuditLog,
    pub identity: identity::Identity,
    pub mailer: mail::Mailer,
    pub cursors: CursorSigner,
    pub queues: Vec<jobs::Queue>,
    /// The compiled policy: built-in roles from `policies/`, custom roles per tenant.
    pub policy: access::PolicyStore,
    /// Access decisions for every module's tenant routes, the bot and jobs.
    pub authz: Arc<dyn kernel::auth::Authorize>,
    /// Tenants, members, invitations and API keys, for routes, jobs, the bot and the CLI.
    pub tenancy: tenancy::Tenancy,
    /// Accounts, categories and transactions.
    pub ledger: ledger::Ledger,
    /// Bank file imports.
    pub imports: imports::Imports,
    /// The categorization pipeline, its rules and approvals.
    pub categorizer: categorize::Categorizer,
    /// Bank connections and their syncs.
    pub banking: banking::Banking,
    /// Plans, subscriptions, Stripe's webhook and the plan limits.
    pub billing: billing::Billing,
    /// Exchange rates.
    pub fx: fx::Fx,
    /// Budgets and their alerts.
    pub budgets: budgets::Budgets,
    /// Custom roles.
    pub roles: access::Roles,
}

/// The hourly checkpoint of every audit chain with new events.
pub const AUDIT_CHECKPOINT: &str = "audit.checkpoint";

/// The hourly removal of expired `Idempotency-Key` rows (kept 24 h).
pub const IDEMPOTENCY_SWEEP: &str = "idempotency.sweep";

/// Removes expired `Idempotency-Key` rows of every tenant and user; returns how many.
pub async fn sweep_idempotency_keys(db: &Db) -> Result<i64, kernel::Problem> {
    let mut tx = kernel::SystemTx::begin(db, kernel::Actor::System).await?;
    let swept = kernel::idempotency::sweep(&mut tx).await?;
    tx.commit().await?;
    Ok(swept)
}

/// Every migration of the platform: ours (as the owner), then the job queue's schema.
pub async fn migrate(owner_url: &str, runtime_url: &str) -> anyhow::Result<()> {
    kernel::migrate::migrate(owner_url, runtime_url).await?;
    jobs::setup(owner_url).await?;
    Ok(())
}

/// Seeds the data the product ships (the ECB's rate history) into a migrated database;
/// quick when it is there already. `balance migrate` runs it after the migrations; test
/// databases seed only where a test needs the rates.
pub async fn seed(owner_url: &str) -> anyhow::Result<u64> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(owner_url).await?;
    let written = fx::seed_history(&mut conn)
        .await
        .map_err(|e| anyhow::anyhow!("seeding the exchange rates: {e}"))?;
    conn.close().await?;
    Ok(written)
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
        let identity = identity::Identity::new(db.clone(), identity_config(config));
        let mailer = mail::Mailer::new(&mail::MailConfig {
            smtp_url: config.mail.smtp_url.as_ref().map(|u| u.expose().clone()),
            from: config.mail.from.clone(),
            files_dir: config.data_dir.join("mail"),
            public_url: config.http.public_url.clone(),
        })?;
        let url = config
            .database
            .url
            .as_ref()
            .map(|u| u.expose().as_str())
            .unwrap_or("postgres://unset@127.0.0.1:1/unset");
        let jobs_pool = kernel::migrate::runtime_pool(url, queues.len() as u32 * 2 + 8)?;
        let policy = access::PolicyStore::new(access::Policy::load()?);
        let authz: Arc<dyn kernel::auth::Authorize> = Arc::new(access::Authorizer::new(
            db.clone(),
            identity.clone(),
            policy.clone(),
        ));
        // Transactions that arrive uncategorised queue the categorization pipeline in the
        // transaction that writes them.
        // The plan limits, checked by each module that creates limited things in its own
        // writing transaction.
        let limits: Arc<dyn kernel::limits::Limits> =
            Arc::new(billing::PlanLimits::new(config.plans.clone()));
        let ledger = ledger::Ledger::new()
            .with_arrivals(categorize::Categorizer::arrivals())
            .with_limits(limits.clone())
            .with_changes(budgets::Budgets::on_change());
        let mut categorizer = categorize::Categorizer::new(ledger.clone());
        if let Some(llm) = &config.llm {
            let mut llm_config = categorize::llm::LlmConfig::new(
                llm.base_url.as_str().trim_end_matches('/'),
                llm.api_key
                    .clone()
                    .unwrap_or_else(|| kernel::Secret::new(String::new())),
                llm.model.clone(),
            );
            llm_config.timeout = llm.timeout;
            llm_config.daily_calls = llm.daily_calls;
            categorizer = categorizer.with_llm(categorize::llm::LlmClient::new(llm_config)?);
        }
        let banking = banking(config, &db, &ledger, identity.vault()).with_limits(limits.clone());
        // A new tenant gets the ledger's default categories in its creating transaction.
        let tenancy = tenancy::Tenancy::new(identity.clone(), policy.clone())
            .with_setup(Arc::new(ledger.clone()))
            .with_limits(limits);
        let billing = billing::Billing::new(db.clone(), billing_config(config), tenancy.clone())?;
        let fx = fx::Fx::new(
            db.clone(),
            fx::FxConfig {
                daily_url: config.fx_daily_url.as_ref().map(|u| u.to_string()),
                timeout: None,
            },
        )?;
        let budgets = budgets::Budgets::new(db.clone(), ledger.clone(), fx.clone());
        Ok(Platform {
            pool,
            jobs_pool,
            db,
            audit,
            identity,
            mailer,
            cursors: config.keys.cursor_signer(),
            queues,
            tenancy,
            imports: imports::Imports::new(ledger.clone()),
            categorizer,
            banking,
            billing,
            budgets,
            fx,
            ledger,
            roles: access::Roles::new(policy.clone()),
            policy,
            authz,
        })
    }

    /// Keeps the policy current on this instance: listens for role and membership changes
    /// of other instances (and reloads after a reconnect). API instances call it.
    pub fn listen_policy(&self) {
        // A LISTEN connection held for good: from the pool kept for those, never the
        // requests' pool.
        self.policy.listen(self.jobs_pool.clone(), self.db.clone());
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
        let registry = registry.handle(IDEMPOTENCY_SWEEP, |job| async move {
            let swept = sweep_idempotency_keys(&job.db).await?;
            tracing::info!(swept, "expired idempotency keys removed");
            Ok(())
        });
        let registry = self.mailer.register(registry);
        let registry = imports::register(registry, self.imports.clone());
        let registry = categorize::register(registry, self.categorizer.clone());
        let registry = banking::register(registry, self.banking.clone());
        let registry = billing::register(registry, self.billing.clone());
        let registry = fx::register(registry, self.fx.clone());
        let registry = budgets::register(registry, self.budgets.clone());
        let registry = registry.handle(VAULT_REENCRYPT, {
            let platform = self.clone();
            move |job| {
                let platform = platform.clone();
                async move {
                    let summary = platform.reencrypt(Some(&job)).await?;
                    tracing::info!(
                        resealed = summary.resealed(),
                        unreadable = summary.unreadable(),
                        key_id = %summary.key_id,
                        "ciphertexts re-encrypted"
                    );
                    Ok(())
                }
            }
        });
        jobs::Runner::new(
            self.jobs_pool.clone(),
            self.db.clone(),
            registry,
            self.queues.clone(),
            config,
        )
        .cron(jobs::CronJob {
            name: "idempotency-sweep",
            schedule: "0 30 * * * *",
            job: || jobs::NewJob::new("system", IDEMPOTENCY_SWEEP, serde_json::json!({})),
        })
        .cron(banking::cron())
        .cron(billing::cron())
        .cron(fx::cron())
        .cron(budgets::cron())
        .cron(jobs::CronJob {
            name: "audit-checkpoints",
            schedule: "0 0 * * * *",
            job: || jobs::NewJob::new("system", AUDIT_CHECKPOINT, serde_json::json!({})),
        })
    }
}

/// The job that re-seals every ciphertext under the first encryption key.
pub const VAULT_REENCRYPT: &str = "vault.reencrypt";

impl Platform {
    /// Every kind of ciphertext the platform keeps, for the key rotation.
    pub fn ciphertexts(&self) -> Vec<Arc<dyn vault::rotation::Ciphertexts>> {
        vec![
            Arc::new(identity::TotpSecrets),
            Arc::new(tenancy::ApiKeyReplays),
            Arc::new(banking::BankTokens(self.banking.clone())),
        ]
    }

    /// Re-seals every ciphertext under the first key of `BALANCE_ENCRYPTION_KEYS`
    /// (resumable: a second run picks up what the first did not reach).
    pub async fn reencrypt(
        &self,
        job: Option<&jobs::JobContext>,
    ) -> Result<vault::rotation::Summary, kernel::Problem> {
        let vault = self.identity.vault();
        let kinds = self.ciphertexts();
        // Progress reaches the job's row while the walk goes on, from a task of its own
        // (the walk's callback cannot wait on the database).
        let (shares, mut heard) = tokio::sync::watch::channel(0.0f32);
        let reporter = job.cloned().map(|job| {
            tokio::spawn(async move {
                while heard.changed().await.is_ok() {
                    let share = *heard.borrow_and_update();
                    if let Err(e) = job.progress(share).await {
                        tracing::warn!(error = %e, "re-encryption progress not recorded");
                    }
                }
            })
        });
        let mut last = 0.0f32;
        let summary = vault::rotation::reencrypt(&self.db, &vault, &kinds, |share| {
            if share - last >= 0.01 || share >= 1.0 {
                last = share;
                shares.send_replace(share);
            }
        })
        .await;
        drop(shares);
        if let Some(reporter) = reporter {
            let _ = reporter.await;
        }
        summary
    }
}

/// Billing's settings: the catalogue, the grace, the origins people may be sent back to
/// (the public URL's and the CORS origins), and Stripe when its keys are set.
fn billing_config(config: &Config) -> billing::BillingConfig {
    let mut allowed_origins = vec![config.http.public_url.origin().ascii_serialization()];
    allowed_origins.extend(config.http.cors_origins.iter().cloned());
    billing::BillingConfig {
        catalogue: config.plans.clone(),
        grace: config.billing_grace,
        allowed_origins,
        stripe: config.stripe.as_ref().map(|s| billing::StripeConfig {
            secret_key: s.secret_key.clone(),
            api_base: s.api_base.to_string(),
            webhook_secrets: s.webhook_secrets.clone(),
            timeout: std::time::Duration::from_secs(20),
        }),
    }
}

/// The bank providers of the configuration: the sandbox bank (unless turned off) and
/// Plaid when its credentials are set.
fn banking(
    config: &Config,
    db: &Db,
    ledger: &ledger::Ledger,
    vault: Arc<vault::Vault>,
) -> banking::Banking {
    let mut providers: Vec<Arc<dyn banking::Provider>> = Vec::new();
    if config.bank_sandbox {
        providers.push(Arc::new(banking::sandbox::Sandbox::new()));
    }
    if let Some(plaid) = &config.plaid {
        providers.push(Arc::new(banking::plaid::Plaid::new(
            banking::plaid::PlaidConfig::new(
                plaid.base_url.as_str().trim_end_matches('/'),
                plaid.client_id.clone(),
                plaid.secret.clone(),
            ),
        )));
    }
    let banking_config = banking::BankingConfig {
        webhook_base: Some(format!(
            "{}/api/v1/webhooks",
            config.http.public_url.as_str().trim_end_matches('/')
        )),
        ..banking::BankingConfig::default()
    };
    banking::Banking::new(db.clone(), ledger.clone(), vault, banking_config, providers)
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

fn identity_config(config: &Config) -> identity::IdentityConfig {
    let limit = |name: &str| {
        let l = config.rate_limits.get(name);
        identity::Limit {
            max: l.max,
            per: l.per,
        }
    };
    identity::IdentityConfig {
        public_url: config.http.public_url.clone(),
        jwt_keys: config.keys.jwt.keys.clone(),
        peppers: config.keys.token_peppers.keys.clone(),
        argon2: config.argon2,
        limits: identity::Limits {
            login_ip: limit("login_ip"),
            login_account: limit("login_account"),
            signup_ip: limit("signup_ip"),
            reset_account: limit("reset_account"),
            verify_ip: limit("verify_ip"),
            totp_account: limit("totp_account"),
            api_key: limit("api_key"),
            user: limit("user"),
            invite_tenant: limit("invite_tenant"),
            invite_user: limit("invite_user"),
            reset_ip: limit("reset_ip"),
            reset_confirm_ip: limit("reset_confirm_ip"),
        },
        access_ttl_secs: 15 * 60,
        refresh_ttl_secs: 30 * 24 * 3600,
        encryption_keys: config.keys.encryption.keys.clone(),
    }
}
