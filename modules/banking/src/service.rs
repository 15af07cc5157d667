//! The banking rules: connecting an item (its token sealed, its accounts linked to ledger
//! accounts), syncing it (every page fetched with no transaction open, then applied in one
//! with the cursor), its failures and repair, webhooks, the schedule, disconnection.
//!
//! A provider call never runs inside a database transaction: a function that calls one
//! takes the caller's [`TenantTx`] by value, ends it, calls, and begins another as the same
//! actor for what it writes.

use std::{collections::HashMap, sync::Arc, time::Duration};

use audit::{NewEvent, Record};
use chrono::Utc;
use jobs::{Enqueue, NewJob};
use kernel::{
    Actor, Db, Keyset, Page, Problem, Secret, TenantId, TenantTx,
    idempotency::{self, Fingerprint, IdempotencyKey},
};
use ledger::{AccountKind, BankChanges, Incoming, Ledger, NewAccount, Synced, TransactionStatus};
use poem::http::StatusCode;
use serde_json::json;
use uuid::Uuid;
use vault::Vault;

use crate::{
    BankingError, Exchanged, LinkRequest, LinkToken, Provider, ProviderAccount, ProviderError,
    ProviderTransaction, SyncPage, WebhookEvent,
    domain::{AccountChoice, BankAccount, Connection, ConnectionStatus, LastError, SyncReport},
    store,
};

/// The job that syncs one connection (`{connection_id}`), on the `sync` queue.
pub const SYNC_JOB: &str = "banking.sync";
/// The platform job that queues the syncs that are due.
pub const SCHEDULE_JOB: &str = "banking.schedule";

/// How the module runs.
#[derive(Debug, Clone)]
pub struct BankingConfig {
    /// Where providers post webhooks: `<public url>/api/v1/webhooks` (the provider's name
    /// and the tenant follow). `None`: webhooks are not asked for.
    pub webhook_base: Option<String>,
    /// Rows per sync page (Plaid's maximum is 500).
    pub page_size: u32,
    /// Restarts of a whole sync loop after the provider's data changed while paging.
    pub max_restarts: u32,
    /// A connection not synced for this long is synced by the schedule.
    pub every: Duration,
    /// Consecutive failed syncs after which a connection is `error`.
    pub fail_after: i32,
}

impl Default for BankingConfig {
    fn default() -> BankingConfig {
        BankingConfig {
            webhook_base: None,
            page_size: 500,
            max_restarts: 3,
            every: Duration::from_secs(6 * 3600),
            fail_after: 3,
        }
    }
}

/// Bank connections, for routes, jobs, the bot and the CLI.
#[derive(Clone)]
pub struct Banking(Arc<Inner>);

struct Inner {
    db: Db,
    ledger: Ledger,
    vault: Arc<Vault>,
    providers: HashMap<&'static str, Arc<dyn Provider>>,
    config: BankingConfig,
    /// The plan's bank connection limit; `None` checks none (this module's own tests).
    limits: Option<Arc<dyn kernel::limits::Limits>>,
}

impl std::fmt::Debug for Banking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.providers.keys().copied().collect();
        f.debug_struct("Banking")
            .field("providers", &names)
            .finish()
    }
}

/// A public token exchanged, not yet stored: the item, its token and its accounts.
pub struct Linked {
    provider: &'static str,
    exchanged: Exchanged,
    accounts: Vec<ProviderAccount>,
}

/// What a sync run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRun {
    /// Applied; the report is the summary event's.
    Applied(SyncReport),
    /// Nothing to do: the connection is disconnected (or gone).
    Skipped,
    /// The provider refused in a way a person must fix (log in again) or that ended the
    /// item: recorded on the connection, not retried.
    Stopped(String),
}

/// Changes for one ledger account, gathered from all pages of an update.
#[derive(Default)]
struct AccountUpdate {
    changes: BankChanges,
}

impl Banking {
    pub fn new(
        db: Db,
        ledger: Ledger,
        vault: Arc<Vault>,
        config: BankingConfig,
        providers: Vec<Arc<dyn Provider>>,
    ) -> Banking {
        Banking(Arc::new(Inner {
            db,
            ledger,
            vault,
            providers: providers.into_iter().map(|p| (p.name(), p)).collect(),
            config,
            limits: None,
        }))
    }

    /// Checks the plan's `bank_connections` before a connection is made.
    pub fn with_limits(mut self, limits: Arc<dyn kernel::limits::Limits>) -> Banking {
        Arc::get_mut(&mut self.0)
            .expect("limits are set before the service is shared")
            .limits = Some(limits);
        self
    }

    async fn admit_connection(&self, tx: &mut TenantTx) -> Result<(), BankingError> {
        if let Some(limits) = &self.0.limits {
            limits
                .admit(tx, kernel::limits::Limit::BankConnections, 1)
                .await?;
        }
        Ok(())
    }

    /// The providers this platform runs (`sandbox`, `plaid`).
    pub fn providers(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.0.providers.keys().copied().collect();
        names.sort_unstable();
        names
    }

    fn provider(&self, name: &str) -> Result<&Arc<dyn Provider>, BankingError> {
        self.0
            .providers
            .get(name)
            .ok_or_else(|| BankingError::ProviderOff(name.chars().take(40).collect()))
    }

    /// The associated data of a connection's token: it opens only in its own row.
    fn aad(tenant: TenantId, id: Uuid, provider: &str, item_id: &str) -> Vec<u8> {
        format!("bank_connection:{tenant}:{id}:{provider}:{item_id}").into_bytes()
    }

    pub(crate) fn seal(
        &self,
        tenant: TenantId,
        id: Uuid,
        provider: &str,
        item: &str,
        token: &Secret<String>,
    ) -> Vec<u8> {
        self.0.vault.encrypt(
            token.expose().as_bytes(),
            &Self::aad(tenant, id, provider, item),
        )
    }

    fn open(
        &self,
        tenant: TenantId,
        row: &store::ConnectionRow,
    ) -> Result<Secret<String>, BankingError> {
        let sealed = row
            .token_ciphertext
            .as_deref()
            .ok_or(BankingError::Disconnected)?;
        let plain = self
            .0
            .vault
            .decrypt(
                sealed,
                &Self::aad(tenant, row.id, &row.provider, &row.item_id),
            )
            .map_err(BankingError::Sealed)?;
        String::from_utf8(plain.expose().clone())
            .map(Secret::new)
            .map_err(|_| BankingError::Sealed(vault::VaultError::Malformed))
    }

    /// Opens a connection's sealed token as the key rotation re-seals it.
    pub(crate) fn reseal(
        &self,
        vault: &Vault,
        tenant: TenantId,
        row: &store::SealedToken,
    ) -> Result<Option<Vec<u8>>, vault::VaultError> {
        vault.reseal(
            &row.token_ciphertext,
            &Self::aad(tenant, row.id, &row.provider, &row.item_id),
        )
    }

    fn webhook_url(&self, provider: &str, tenant: TenantId) -> Option<String> {
        self.0
            .config
            .webhook_base
            .as_ref()
            .map(|base| format!("{}/{provider}/{tenant}", base.trim_end_matches('/')))
    }

    /// A link token for the front end; with `connection_id`, an update-mode one that
    /// repairs that connection (after Link, `POST …/sync`).
    pub async fn link_token(
        &self,
        mut tx: TenantTx,
        provider: &str,
        connection_id: Option<Uuid>,
    ) -> Result<LinkToken, BankingError> {
        let tenant = tx.tenant_id();
        let (provider, access_token) = match connection_id {
            Some(id) => {
                let row = store::connection(tx.conn(), tenant, id, false)
                    .await?
                    .ok_or(BankingError::NotFound)?;
                if row.status == "disconnected" {
                    return Err(BankingError::Disconnected);
                }
                let token = self.open(tenant, &row)?;
                (self.provider(&row.provider)?.clone(), Some(token))
            }
            None => (self.provider(provider)?.clone(), None),
        };
        tx.commit().await?;
        let request = LinkRequest {
            client_user_id: tenant.to_string(),
            webhook: self.webhook_url(provider.name(), tenant),
            access_token,
        };
        Ok(provider.link_token(&request).await?)
    }

    /// Exchanges a public token and reads the item's accounts: provider calls only, nothing
    /// stored (see [`Banking::connect`]).
    pub async fn exchange(
        &self,
        provider: &str,
        public_token: &str,
    ) -> Result<Linked, BankingError> {
        let provider = self.provider(provider)?.clone();
        let exchanged = provider.exchange(public_token).await?;
        match provider.accounts(&exchanged.access_token).await {
            Ok(accounts) => Ok(Linked {
                provider: provider.name(),
                exchanged,
                accounts,
            }),
            Err(e) => {
                self.discard(provider.name(), &exchanged.access_token).await;
                Err(e.into())
            }
        }
    }

    /// Revokes a token nothing stores (best effort: logged when it fails).
    async fn discard(&self, provider: &str, token: &Secret<String>) {
        if let Ok(p) = self.provider(provider)
            && let Err(e) = p.disconnect(token).await
        {
            tracing::warn!(
                provider,
                code = e.code(),
                "an unused bank token was not revoked"
            );
        }
    }

    /// Connects a bank: exchanges `public_token`, links each provider account to a ledger
    /// account (the one `choices` names, of the same currency, or a new one), seals the
    /// token, and queues the first sync. `Idempotency-Key` replays the first answer; the
    /// provider is called with no transaction open.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        &self,
        mut tx: TenantTx,
        provider: &str,
        public_token: Option<&str>,
        choices: &[AccountChoice],
        key: Option<&IdempotencyKey>,
        fingerprint: Fingerprint,
    ) -> Result<(Connection, bool), BankingError> {
        let context = tx.context().clone();
        if tx.is_account_scoped() {
            return Err(BankingError::Scoped);
        }
        // The sandbox needs no Link: without a token it is a new bank of its own.
        let generated;
        let public_token = match public_token {
            Some(token) => token,
            None if provider == "sandbox" => {
                use sha2::Digest;
                // A seed beginning `dead` is the sandbox's broken login: never a new bank's.
                let seed = std::iter::repeat_with(|| {
                    kernel::hex::encode(&sha2::Sha256::digest(Uuid::now_v7().as_bytes())[..8])
                })
                .find(|seed| !seed.starts_with("dead"))
                .expect("an endless supply of seeds");
                generated = format!("{}{seed}", crate::sandbox::PUBLIC_TOKEN_PREFIX);
                &generated
            }
            None => return Err(BankingError::invalid("public_token", "is required")),
        };
        if let Some(stored) =
            idempotency::claim::<_, Connection>(&mut tx, key, fingerprint, StatusCode::CREATED)
                .await?
        {
            tx.rollback().await?;
            return Ok((stored, true));
        }
        // At the limit, the public token is not spent; the check that counts is the one
        // in the writing transaction.
        self.admit_connection(&mut tx).await?;
        tx.rollback().await?;
        let linked = self.exchange(provider, public_token).await?;
        let mut tx = TenantTx::resume(&self.0.db, &context).await?;
        let replay =
            idempotency::claim::<_, Connection>(&mut tx, key, fingerprint, StatusCode::CREATED)
                .await;
        let written = match replay {
            Ok(Some(stored)) => Ok((stored, true)),
            Ok(None) => self
                .store_connection(&mut tx, &linked, choices)
                .await
                .map(|c| (c, false)),
            Err(p) => Err(BankingError::from(p)),
        };
        match written {
            Ok((connection, false)) => {
                idempotency::commit(tx, key, StatusCode::CREATED, &connection).await?;
                Ok((connection, false))
            }
            Ok((stored, true)) => {
                drop(tx);
                self.discard(linked.provider, &linked.exchanged.access_token)
                    .await;
                Ok((stored, true))
            }
            // The item is a live connection's: its token is that connection's too.
            Err(BankingError::AlreadyConnected) => Err(BankingError::AlreadyConnected),
            Err(e) => {
                drop(tx);
                self.discard(linked.provider, &linked.exchanged.access_token)
                    .await;
                Err(e)
            }
        }
    }

    async fn store_connection(
        &self,
        tx: &mut TenantTx,
        linked: &Linked,
        choices: &[AccountChoice],
    ) -> Result<Connection, BankingError> {
        let tenant = tx.tenant_id();
        for choice in choices {
            if !linked
                .accounts
                .iter()
                .any(|a| a.id == choice.provider_account_id)
            {
                return Err(BankingError::invalid(
                    "accounts",
                    format!(
                        "the bank has no account `{}`",
                        short(&choice.provider_account_id)
                    ),
                ));
            }
        }
        let id = Uuid::now_v7();
        let sealed = self.seal(
            tenant,
            id,
            linked.provider,
            &linked.exchanged.item_id,
            &linked.exchanged.access_token,
        );
        let created_by = tx.context().actor.user_id().map(|u| u.as_uuid());
        self.admit_connection(tx).await?;
        let inserted = store::insert_connection(
            tx.conn(),
            tenant,
            store::NewConnectionRow {
                id,
                provider: linked.provider,
                item_id: &linked.exchanged.item_id,
                institution: linked.exchanged.institution.as_deref(),
                token_ciphertext: &sealed,
                created_by,
            },
        )
        .await?;
        if !inserted {
            return Err(BankingError::AlreadyConnected);
        }
        let mut opened = 0;
        for (position, account) in linked.accounts.iter().enumerate() {
            let Some(code) = account.currency.as_deref() else {
                tracing::warn!(
                    provider = linked.provider,
                    "a bank account without an ISO currency is not linked"
                );
                continue;
            };
            let currency = kernel::Currency::parse(code).map_err(|_| {
                BankingError::invalid("accounts", "the bank names an unknown currency")
            })?;
            let chosen = choices
                .iter()
                .find(|c| c.provider_account_id == account.id)
                .and_then(|c| c.account_id);
            let (account_id, calibrate) = match chosen {
                Some(existing) => {
                    let ledger_account =
                        self.0
                            .ledger
                            .account(tx, existing)
                            .await
                            .map_err(|e| match e {
                                ledger::LedgerError::NotFound => BankingError::invalid(
                                    "accounts",
                                    "names a ledger account that does not exist",
                                ),
                                e => e.into(),
                            })?;
                    if ledger_account.currency != currency {
                        return Err(BankingError::invalid(
                            "accounts",
                            format!(
                                "the bank account is in {code}, the ledger account in {}",
                                ledger_account.currency
                            ),
                        ));
                    }
                    if ledger_account.archived_at.is_some() {
                        return Err(BankingError::invalid(
                            "accounts",
                            "names an archived account",
                        ));
                    }
                    (existing, false)
                }
                None => {
                    let name = match &account.mask {
                        Some(mask) => format!("{} ••{mask}", account.name),
                        None => account.name.clone(),
                    };
                    let created = self
                        .0
                        .ledger
                        .create_account(
                            tx,
                            NewAccount {
                                name: kernel::DisplayName::parse("name", &truncate(&name, 200))
                                    .or_else(|_| kernel::DisplayName::parse("name", "Bank account"))
                                    .map_err(BankingError::Invalid)?,
                                kind: account_kind(account),
                                currency,
                                opening_balance: 0,
                                opening_date: Utc::now().date_naive() - chrono::Days::new(730),
                                iban: None,
                                institution: linked.exchanged.institution.as_deref().and_then(
                                    |i| {
                                        kernel::DisplayName::parse("institution", &truncate(i, 200))
                                            .ok()
                                    },
                                ),
                            },
                        )
                        .await?;
                    opened += 1;
                    (created.id, true)
                }
            };
            store::insert_bank_account(
                tx.conn(),
                tenant,
                store::NewBankAccountRow {
                    connection_id: id,
                    position: position as i16,
                    provider_account_id: &account.id,
                    account_id,
                    name: &truncate(&account.name, 200),
                    mask: account.mask.as_deref().map(|m| last_chars(m, 4)).as_deref(),
                    kind: &account.kind,
                    subtype: account.subtype.as_deref(),
                    currency: code,
                    current_balance: account.current_balance,
                    available_balance: account.available_balance,
                    calibrate,
                },
            )
            .await?;
        }
        let linked_accounts: Vec<Uuid> = store::bank_accounts(tx.conn(), tenant, &[id])
            .await?
            .iter()
            .map(|a| a.account_id)
            .collect();
        store::set_accounts(tx.conn(), tenant, id, &linked_accounts).await?;
        let job = self.queue_sync(tx, id, None);
        store::set_sync_job(tx.conn(), tenant, id, job).await?;
        tx.record(
            NewEvent::new("bank.connected")
                .resource("bank_connection", id)
                .payload(json!({
                    "provider": linked.provider,
                    "accounts": linked.accounts.len(),
                    "accounts_opened": opened,
                    "sync_job_id": job,
                })),
        );
        self.view(tx, id).await
    }

    fn queue_sync(&self, tx: &mut TenantTx, id: Uuid, key: Option<String>) -> Uuid {
        let mut job = NewJob::new("sync", SYNC_JOB, json!({ "connection_id": id }));
        if let Some(key) = key {
            job = job.idempotency_key(key);
        }
        tx.enqueue(job)
    }

    /// One connection as the API shows it.
    pub async fn connection(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
    ) -> Result<Connection, BankingError> {
        self.view(tx, id).await
    }

    async fn view(&self, tx: &mut TenantTx, id: Uuid) -> Result<Connection, BankingError> {
        let tenant = tx.tenant_id();
        let row = store::connection(tx.conn(), tenant, id, false)
            .await?
            .ok_or(BankingError::NotFound)?;
        let mut views = self.views(tx, vec![row]).await?;
        Ok(views.remove(0))
    }

    async fn views(
        &self,
        tx: &mut TenantTx,
        rows: Vec<store::ConnectionRow>,
    ) -> Result<Vec<Connection>, BankingError> {
        let tenant = tx.tenant_id();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let accounts = store::bank_accounts(tx.conn(), tenant, &ids).await?;
        let mut balances: HashMap<Uuid, i64> = HashMap::new();
        for a in &accounts {
            if let std::collections::hash_map::Entry::Vacant(slot) = balances.entry(a.account_id) {
                match self.0.ledger.account(tx, a.account_id).await {
                    Ok(account) => {
                        slot.insert(account.balance);
                    }
                    Err(ledger::LedgerError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let accounts = accounts
                    .iter()
                    .filter(|a| a.connection_id == row.id)
                    .map(|a| BankAccount {
                        provider_account_id: a.provider_account_id.clone(),
                        account_id: a.account_id,
                        name: a.name.clone(),
                        mask: a.mask.clone(),
                        kind: a.kind.clone(),
                        subtype: a.subtype.clone(),
                        currency: a.currency.clone(),
                        reported_balance: a.current_balance,
                        available_balance: a.available_balance,
                        computed_balance: balances.get(&a.account_id).copied().unwrap_or(0),
                        drift: a.drift,
                    })
                    .collect();
                connection_view(row, accounts)
            })
            .collect())
    }

    /// Connections, newest first.
    pub async fn connections(
        &self,
        tx: &mut TenantTx,
        page: &Keyset,
    ) -> Result<Page<Connection>, BankingError> {
        let tenant = tx.tenant_id();
        let rows = store::connections(tx.conn(), tenant, page.after(), page.fetch_limit()).await?;
        let page = page.page(rows, |r| (r.created_at, r.id));
        let Page {
            data,
            next_cursor,
            has_more,
        } = page;
        let data = self.views(tx, data).await?;
        Ok(Page {
            data,
            next_cursor,
            has_more,
        })
    }

    /// Asks for a sync: one queued and not started is joined, else one is queued (a running
    /// one may have fetched its pages already). Its id.
    pub async fn request_sync(&self, tx: &mut TenantTx, id: Uuid) -> Result<Uuid, BankingError> {
        self.sync_once(tx, id, None).await
    }

    async fn sync_once(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        key: Option<String>,
    ) -> Result<Uuid, BankingError> {
        let tenant = tx.tenant_id();
        let row = store::connection(tx.conn(), tenant, id, true)
            .await?
            .ok_or(BankingError::NotFound)?;
        if row.status == "disconnected" {
            return Err(BankingError::Disconnected);
        }
        if let Some(job) = row.sync_job_id
            && let Some(view) = jobs::get(tx, job).await?
            && view.status == "queued"
        {
            return Ok(job);
        }
        let job = self.queue_sync(tx, id, key);
        store::set_sync_job(tx.conn(), tenant, id, job).await?;
        Ok(job)
    }

    /// Disconnects: revokes the token at the provider (a provider that cannot be reached
    /// does not keep a person connected: the revocation's outcome is in the event), drops
    /// it, keeps the accounts and their history.
    pub async fn disconnect(&self, mut tx: TenantTx, id: Uuid) -> Result<(), BankingError> {
        let tenant = tx.tenant_id();
        let context = tx.context().clone();
        let row = store::connection(tx.conn(), tenant, id, false)
            .await?
            .ok_or(BankingError::NotFound)?;
        if row.status == "disconnected" {
            tx.commit().await?;
            return Ok(());
        }
        // A token that does not open cannot be revoked, but never keeps a person connected.
        let token = match self.open(tenant, &row) {
            Ok(token) => Some(token),
            Err(BankingError::Sealed(e)) => {
                tracing::warn!(connection_id = %id, error = %e, "disconnecting a connection whose token does not open");
                None
            }
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        let revoked = match token {
            None => false,
            Some(token) => match self.provider(&row.provider)?.disconnect(&token).await {
                Ok(()) | Err(ProviderError::Ended { .. }) => true,
                Err(e) => {
                    tracing::warn!(code = e.code(), "the provider did not revoke a bank token");
                    false
                }
            },
        };
        let mut tx = TenantTx::resume(&self.0.db, &context).await?;
        store::connection(tx.conn(), tenant, id, true)
            .await?
            .ok_or(BankingError::NotFound)?;
        store::disconnect(tx.conn(), tenant, id).await?;
        tx.record(
            NewEvent::new("bank.disconnected")
                .resource("bank_connection", id)
                .payload(json!({ "provider": row.provider, "revoked": revoked })),
        );
        tx.commit().await?;
        Ok(())
    }

    /// Syncs a connection: every page from its cursor, fetched with no transaction open
    /// (restarted from the first page's cursor when the provider's data changed meanwhile),
    /// then applied with the new cursor in one transaction, or not at all. A sync that
    /// finds the cursor moved by another meanwhile starts over from the new one.
    pub async fn sync(
        &self,
        db: &Db,
        tenant: TenantId,
        id: Uuid,
        job_id: Option<Uuid>,
    ) -> Result<SyncRun, BankingError> {
        for _attempt in 0..3 {
            let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
            let Some(row) = store::connection(tx.conn(), tenant, id, false).await? else {
                return Ok(SyncRun::Skipped);
            };
            if row.status == "disconnected" {
                return Ok(SyncRun::Skipped);
            }
            let token = match self.open(tenant, &row) {
                Ok(token) => token,
                Err(e) => {
                    drop(tx);
                    self.failed(
                        db,
                        tenant,
                        id,
                        "TOKEN_UNREADABLE",
                        "the sealed token does not open",
                        Some(ConnectionStatus::Error),
                    )
                    .await?;
                    return Err(e);
                }
            };
            let provider = self.provider(&row.provider)?.clone();
            tx.commit().await?;

            let started = std::time::Instant::now();
            let fetched = self
                .fetch(provider.as_ref(), &token, row.cursor.as_deref())
                .await;
            let fetch_took = started.elapsed();
            let (pages, restarts) = match fetched {
                Ok(fetched) => fetched,
                Err(e) => return self.provider_failed(db, tenant, id, e).await,
            };

            let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
            let Some(now) = store::connection(tx.conn(), tenant, id, true).await? else {
                return Ok(SyncRun::Skipped);
            };
            if now.status == "disconnected" {
                return Ok(SyncRun::Skipped);
            }
            if now.cursor != row.cursor {
                // Another sync applied an update meanwhile: ours is stale.
                continue;
            }
            let applying = std::time::Instant::now();
            let report = match self.apply(&mut tx, &now, &pages, restarts).await {
                Ok(report) => report,
                Err(e) => {
                    drop(tx);
                    tracing::error!(connection_id = %id, error = ?e, "a bank update did not apply");
                    self.failed(
                        db,
                        tenant,
                        id,
                        "APPLY_FAILED",
                        "the bank's update could not be applied",
                        None,
                    )
                    .await?;
                    return Err(e);
                }
            };
            let cursor = pages
                .last()
                .map(|p| p.next_cursor.as_str())
                .filter(|c| !c.is_empty())
                .or(now.cursor.as_deref())
                .map(str::to_string);
            store::mark_synced(tx.conn(), tenant, id, cursor.as_deref()).await?;
            if job_id.is_some() && now.sync_job_id == job_id {
                store::clear_sync_job(tx.conn(), tenant, id).await?;
            }
            tx.record(
                NewEvent::new("bank.synced")
                    .resource("bank_connection", id)
                    .payload(serde_json::to_value(&report).unwrap_or_default()),
            );
            tx.commit().await?;
            tracing::info!(
                connection_id = %id,
                pages = report.pages,
                added = report.added,
                present = report.present,
                fetch_ms = fetch_took.as_millis() as u64,
                apply_ms = applying.elapsed().as_millis() as u64,
                "bank sync applied"
            );
            return Ok(SyncRun::Applied(report));
        }
        Err(BankingError::Provider(ProviderError::Unavailable(
            "the cursor kept moving under the sync".into(),
        )))
    }

    /// Every page of one update, from `cursor`.
    async fn fetch(
        &self,
        provider: &dyn Provider,
        token: &Secret<String>,
        cursor: Option<&str>,
    ) -> Result<(Vec<SyncPage>, u64), ProviderError> {
        let mut restarts = 0u64;
        'update: loop {
            let mut pages: Vec<SyncPage> = Vec::new();
            let mut at = cursor.map(str::to_string);
            loop {
                match provider
                    .sync(token, at.as_deref(), self.0.config.page_size)
                    .await
                {
                    Ok(page) => {
                        let more = page.has_more;
                        at = Some(page.next_cursor.clone()).filter(|c| !c.is_empty());
                        pages.push(page);
                        if !more {
                            return Ok((pages, restarts));
                        }
                    }
                    Err(ProviderError::MutationDuringPagination)
                        if restarts < u64::from(self.0.config.max_restarts) =>
                    {
                        restarts += 1;
                        tracing::info!(
                            restarts,
                            "bank data changed while paging: starting the update over"
                        );
                        continue 'update;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Applies an update's pages to the linked ledger accounts, then the balances.
    async fn apply(
        &self,
        tx: &mut TenantTx,
        row: &store::ConnectionRow,
        pages: &[SyncPage],
        restarts: u64,
    ) -> Result<SyncReport, BankingError> {
        let tenant = tx.tenant_id();
        let links = store::bank_accounts(tx.conn(), tenant, &[row.id]).await?;
        let space = format!("{}.{}", row.provider, row.item_id);
        let ext = |id: &str| format!("{space}:{id}");
        let mut report = SyncReport {
            pages: pages.len() as u64,
            restarts,
            ..SyncReport::default()
        };
        let mut updates: HashMap<Uuid, AccountUpdate> = HashMap::new();
        let link_of = |provider_account: &str| {
            links
                .iter()
                .find(|l| l.provider_account_id == provider_account)
        };
        let incoming =
            |t: &ProviderTransaction, report: &mut SyncReport| -> Option<(Uuid, Incoming)> {
                let link = link_of(&t.account_id)?;
                if t.currency.as_deref() != Some(link.currency.as_str()) {
                    report.refused += 1;
                    return None;
                }
                Some((
                    link.account_id,
                    Incoming {
                        date: t.date,
                        value_date: None,
                        amount: t.amount,
                        merchant: t.merchant_name.as_deref().map(|m| truncate(m, 200)),
                        description: truncate(&t.name, 1000),
                        status: if t.pending {
                            TransactionStatus::Pending
                        } else {
                            TransactionStatus::Posted
                        },
                        external_id: Some(ext(&t.id)),
                        fingerprint: ledger::Fingerprint([0; 32]),
                    },
                ))
            };
        for page in pages {
            for t in &page.added {
                match incoming(t, &mut report) {
                    Some((account, row)) => {
                        updates
                            .entry(account)
                            .or_default()
                            .changes
                            .added
                            .push(Synced {
                                row,
                                replaces: t.pending_transaction_id.as_deref().map(ext),
                            })
                    }
                    None if link_of(&t.account_id).is_none() => report.refused += 1,
                    None => {}
                }
            }
            for t in &page.modified {
                match incoming(t, &mut report) {
                    Some((account, row)) => updates
                        .entry(account)
                        .or_default()
                        .changes
                        .modified
                        .push(row),
                    None if link_of(&t.account_id).is_none() => report.refused += 1,
                    None => {}
                }
            }
            for r in &page.removed {
                let targets: Vec<Uuid> = match r.account_id.as_deref() {
                    Some(named) => link_of(named).map(|l| l.account_id).into_iter().collect(),
                    None => links.iter().map(|l| l.account_id).collect(),
                };
                for account in targets {
                    updates
                        .entry(account)
                        .or_default()
                        .changes
                        .removed
                        .push(ext(&r.id));
                }
            }
        }
        let mut accounts: Vec<Uuid> = updates.keys().copied().collect();
        accounts.sort_unstable();
        for account in accounts {
            let update = updates.remove(&account).expect("listed");
            let rows = update.changes.added.len() + update.changes.modified.len();
            let out = match self
                .0
                .ledger
                .apply_bank_changes(tx, account, update.changes)
                .await
            {
                Ok(out) => out,
                // A person archived the ledger account: its bank rows are not taken.
                Err(ledger::LedgerError::AccountArchived) => {
                    report.refused += rows as u64;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            report.added += out.inserted.len() as u64;
            report.present += out.present;
            report.linked += out.linked;
            report.posted += out.posted;
            report.modified += out.modified;
            report.removed += out.removed;
            report.ignored += out.ignored;
        }
        // The bank's balances, as of the last page, beside ours.
        if let Some(last) = pages.last() {
            for link in &links {
                let Some(reported) = last
                    .accounts
                    .iter()
                    .find(|a| a.id == link.provider_account_id)
                else {
                    continue;
                };
                let Some(current) = reported.current_balance else {
                    continue;
                };
                // An opened account takes the bank's balance as long as the bank is still
                // sending its history (never from a page that has none yet).
                let calibrate = link.calibrate && !last.next_cursor.is_empty();
                let account = match self
                    .0
                    .ledger
                    .report_balance(tx, link.account_id, current, calibrate)
                    .await
                {
                    Ok(account) => account,
                    Err(ledger::LedgerError::NotFound) => continue,
                    Err(e) => return Err(e.into()),
                };
                let drift = current - account.balance;
                if drift != link.drift {
                    tx.record(
                        NewEvent::new("bank.balance_drift")
                            .resource("account", link.account_id)
                            .payload(json!({
                                "connection_id": row.id,
                                "reported": current,
                                "computed": account.balance,
                                "drift": drift,
                            })),
                    );
                }
                store::update_bank_account(
                    tx.conn(),
                    tenant,
                    row.id,
                    &link.provider_account_id,
                    store::Reported {
                        current: Some(current),
                        available: reported.available_balance,
                        drift,
                        calibrate: link.calibrate && !last.history_complete,
                    },
                )
                .await?;
            }
        }
        Ok(report)
    }

    /// Records a provider's refusal on the connection; what to tell the job runner.
    async fn provider_failed(
        &self,
        db: &Db,
        tenant: TenantId,
        id: Uuid,
        e: ProviderError,
    ) -> Result<SyncRun, BankingError> {
        let message = match &e {
            ProviderError::NeedsReauth { message, .. } | ProviderError::Ended { message, .. } => {
                truncate(message, 500)
            }
            other => truncate(&other.to_string(), 500),
        };
        match &e {
            ProviderError::NeedsReauth { code, .. } => {
                self.failed(
                    db,
                    tenant,
                    id,
                    code,
                    &message,
                    Some(ConnectionStatus::NeedsReauth),
                )
                .await?;
                Ok(SyncRun::Stopped(code.clone()))
            }
            ProviderError::Ended { code, .. } => {
                self.failed(
                    db,
                    tenant,
                    id,
                    code,
                    &message,
                    Some(ConnectionStatus::Error),
                )
                .await?;
                Ok(SyncRun::Stopped(code.clone()))
            }
            ProviderError::Refused(_) | ProviderError::BadWebhook(_) => {
                self.failed(
                    db,
                    tenant,
                    id,
                    e.code(),
                    &message,
                    Some(ConnectionStatus::Error),
                )
                .await?;
                Err(e.into())
            }
            _ => {
                self.failed(db, tenant, id, e.code(), &message, None)
                    .await?;
                Err(e.into())
            }
        }
    }

    /// Counts a failure; `status` when the failure decides it, else `error` once failures
    /// reach the limit. `bank.sync_failed` is written when the status changes to a failed one.
    async fn failed(
        &self,
        db: &Db,
        tenant: TenantId,
        id: Uuid,
        code: &str,
        message: &str,
        status: Option<ConnectionStatus>,
    ) -> Result<(), BankingError> {
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let Some(row) = store::connection(tx.conn(), tenant, id, true).await? else {
            return Ok(());
        };
        if row.status == "disconnected" {
            return Ok(());
        }
        let before = ConnectionStatus::from_db(&row.status);
        let next = status.unwrap_or(if row.failures + 1 >= self.0.config.fail_after {
            ConnectionStatus::Error
        } else {
            before
        });
        let failures =
            store::mark_failed(tx.conn(), tenant, id, next.as_str(), code, message).await?;
        if next != before && next != ConnectionStatus::Active {
            tx.record(
                NewEvent::new("bank.sync_failed")
                    .resource("bank_connection", id)
                    .payload(json!({
                        "code": code,
                        "status": next.as_str(),
                        "failures": failures,
                    })),
            );
        }
        tx.commit().await?;
        Ok(())
    }

    /// A provider's webhook for `tenant` (the URL names it; the signature proves the
    /// provider sent it): a sync is asked for (joining one queued or running), or a broken
    /// item recorded. An item the tenant does not have is acknowledged and ignored.
    pub async fn webhook(
        &self,
        provider: &str,
        tenant: TenantId,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Option<Uuid>, BankingError> {
        // An unknown tenant or a provider this platform does not run: nothing is there.
        let provider = self
            .provider(provider)
            .map_err(|_| BankingError::NotFound)?
            .clone();
        let mut tx = kernel::SystemTx::begin(&self.0.db, Actor::System).await?;
        let live = store::tenant_is_live(tx.conn(), tenant).await?;
        tx.rollback().await?;
        if !live {
            return Err(BankingError::NotFound);
        }
        let webhook = provider.verify_webhook(headers, body).await?;
        let mut tx = TenantTx::begin(&self.0.db, tenant, Actor::System).await?;
        let Some(id) =
            store::connection_of_item(tx.conn(), tenant, provider.name(), &webhook.item_id).await?
        else {
            tracing::info!(
                provider = provider.name(),
                "a webhook for an item this tenant does not have"
            );
            return Ok(None);
        };
        let job = match webhook.event {
            WebhookEvent::SyncUpdatesAvailable => Some(self.sync_once(&mut tx, id, None).await?),
            WebhookEvent::ItemError(code) => {
                tx.commit().await?;
                let reauth = matches!(
                    code.as_str(),
                    "ITEM_LOGIN_REQUIRED" | "PENDING_EXPIRATION" | "PENDING_DISCONNECT"
                );
                let status = if reauth {
                    ConnectionStatus::NeedsReauth
                } else {
                    ConnectionStatus::Error
                };
                self.failed(
                    &self.0.db,
                    tenant,
                    id,
                    &code,
                    "reported by the provider's webhook",
                    Some(status),
                )
                .await?;
                return Ok(None);
            }
            WebhookEvent::Ignored(_) => None,
        };
        tx.commit().await?;
        Ok(job)
    }

    /// Queues the syncs that are due in every tenant (the schedule's job): once per
    /// connection and period across workers.
    pub async fn schedule(&self, db: &Db) -> Result<u64, BankingError> {
        let before = Utc::now()
            - chrono::Duration::from_std(self.0.config.every).unwrap_or(chrono::Duration::hours(6));
        let slot = Utc::now().timestamp() / self.0.config.every.as_secs().max(1) as i64;
        let mut queued = 0;
        let mut tx = kernel::SystemTx::begin(db, Actor::System).await?;
        let tenants = store::live_tenants(tx.conn()).await?;
        tx.rollback().await?;
        for tenant in tenants {
            let tenant = TenantId::from_uuid(tenant);
            match self.schedule_tenant(db, tenant, before, slot).await {
                Ok(n) => queued += n,
                // One tenant's trouble does not keep the others from syncing.
                Err(e) => {
                    tracing::error!(%tenant, error = ?e, "bank syncs of a tenant not scheduled")
                }
            }
        }
        Ok(queued)
    }

    async fn schedule_tenant(
        &self,
        db: &Db,
        tenant: TenantId,
        before: chrono::DateTime<Utc>,
        slot: i64,
    ) -> Result<u64, BankingError> {
        let mut queued = 0;
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        for id in store::due(tx.conn(), tenant, before).await? {
            self.sync_once(&mut tx, id, Some(format!("bank-sync:{id}:{slot}")))
                .await?;
            queued += 1;
        }
        tx.commit().await?;
        Ok(queued)
    }
}

fn connection_view(row: store::ConnectionRow, accounts: Vec<BankAccount>) -> Connection {
    let last_error = match (row.last_error_code, row.last_error_at) {
        (Some(code), Some(at)) => Some(LastError {
            code,
            message: row.last_error_message.unwrap_or_default(),
            at,
        }),
        _ => None,
    };
    Connection {
        id: row.id,
        provider: row.provider,
        institution: row.institution,
        status: ConnectionStatus::from_db(&row.status),
        last_synced_at: row.last_synced_at,
        last_error,
        sync_job_id: row.sync_job_id,
        accounts,
        created_at: row.created_at,
        disconnected_at: row.disconnected_at,
        version: row.version,
    }
}

/// The ledger kind of a provider account.
fn account_kind(account: &ProviderAccount) -> AccountKind {
    match (account.kind.as_str(), account.subtype.as_deref()) {
        ("credit", _) => AccountKind::Credit,
        ("loan", _) => AccountKind::Loan,
        (_, Some("savings" | "money market" | "cd")) => AccountKind::Savings,
        _ => AccountKind::Checking,
    }
}

/// At most `max` characters.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The last `n` characters (an account mask is never more).
fn last_chars(text: &str, n: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(n)).collect()
}

/// A provider's id as an error message quotes it.
fn short(text: &str) -> String {
    truncate(text, 40)
}

impl From<BankingError> for jobs::JobError {
    fn from(e: BankingError) -> jobs::JobError {
        match &e {
            BankingError::Provider(p) if p.is_transient() => jobs::JobError::retry(p),
            BankingError::Provider(p) => jobs::JobError::fatal(p),
            // Fails the same way every run: recorded on the connection, not retried.
            BankingError::Sealed(v) => {
                jobs::JobError::fatal(format!("the sealed token does not open: {v}"))
            }
            _ => jobs::JobError::from(Problem::from(e)),
        }
    }
}
