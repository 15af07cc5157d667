//! A database of its own per test, the ledger, and the banking service with two providers:
//! the Plaid client pointed at the testkit's Plaid stand-in, and the sandbox bank on a
//! clock the test moves.

use std::sync::{Arc, Mutex};

use audit::{AuditLog, Keys};
use banking::{
    Banking, BankingConfig, Connection, Provider, SyncRun,
    plaid::{Plaid, PlaidConfig},
    sandbox::Sandbox,
};
use chrono::NaiveDate;
use kernel::{Actor, Db, Secret, TenantId, TenantTx, UserId, idempotency::Fingerprint};
use ledger::Ledger;
use serde_json::Value;
use testkit::{db::TestDb, plaid::PlaidStandIn, seed};
use uuid::Uuid;
use vault::Vault;

pub struct Env {
    pub _db: TestDb,
    pub kdb: Db,
    pub ledger: Ledger,
    pub banking: Banking,
    pub plaid: PlaidStandIn,
    pub tenant: TenantId,
    pub user: UserId,
    pub vault: Arc<Vault>,
    pub today: Arc<Mutex<NaiveDate>>,
    pub config: BankingConfig,
}

/// A stored transaction as the tests look at it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub amount: i64,
    pub status: String,
    pub date: NaiveDate,
    pub merchant: Option<String>,
    pub description: String,
    pub category_id: Option<Uuid>,
    pub notes: Option<String>,
    pub deleted: bool,
    pub source: String,
}

pub fn key(id: &str, byte: u8) -> (String, [u8; 32]) {
    (id.to_string(), [byte; 32])
}

pub fn vault_of(keys: &[(String, [u8; 32])]) -> Arc<Vault> {
    Arc::new(Vault::new(keys.iter().map(|(id, k)| (id.as_str(), &k[..]))).unwrap())
}

impl Env {
    pub async fn new() -> Env {
        Env::with(BankingConfig {
            page_size: 2,
            ..BankingConfig::default()
        })
        .await
    }

    pub async fn with(config: BankingConfig) -> Env {
        let db = TestDb::migrated(jobs::SCHEMA_SALT, |t| async move {
            kernel::migrate::migrate(&t.owner_url, &t.runtime_url).await?;
            jobs::setup(&t.owner_url).await?;
            Ok(())
        })
        .await
        .unwrap();
        let keys = Keys::from_seeds([("test-1", &[11u8; 32][..])]).unwrap();
        let audit: Arc<dyn kernel::CommitHook> = Arc::new(AuditLog::new(keys));
        let jobs: Arc<dyn kernel::CommitHook> =
            Arc::new(jobs::JobsHook::new(&jobs::default_queues()));
        let kdb = db.kernel_db([audit, jobs]).await.unwrap();
        let tenant = seed::tenant(&kdb, "Acme").await;
        let user = seed::user(&kdb).await;
        seed::member(&kdb, tenant, user, &["owner"]).await;
        let plaid = PlaidStandIn::start().await.unwrap();
        let vault = vault_of(&[key("k1", 1)]);
        let today = Arc::new(Mutex::new(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap()));
        let ledger = Ledger::new();
        let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await.unwrap();
        ledger.seed_categories(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let mut env = Env {
            banking: Banking::new(
                kdb.clone(),
                ledger.clone(),
                vault.clone(),
                config.clone(),
                vec![],
            ),
            _db: db,
            kdb,
            ledger,
            plaid,
            tenant,
            user,
            vault,
            today,
            config,
        };
        env.banking = env.banking_with(env.vault.clone());
        env
    }

    /// The banking service as a platform with `vault` as its key ring would build it.
    pub fn banking_with(&self, vault: Arc<Vault>) -> Banking {
        let plaid = Plaid::new(PlaidConfig::new(
            self.plaid.url(),
            testkit::plaid::CLIENT_ID,
            Secret::new(testkit::plaid::SECRET.to_string()),
        ));
        let today = self.today.clone();
        let sandbox = Sandbox::with_clock(Arc::new(move || *today.lock().unwrap()));
        let providers: Vec<Arc<dyn Provider>> = vec![Arc::new(plaid), Arc::new(sandbox)];
        Banking::new(
            self.kdb.clone(),
            self.ledger.clone(),
            vault,
            BankingConfig {
                webhook_base: Some("https://balance.example/api/v1/webhooks".into()),
                ..self.config.clone()
            },
            providers,
        )
    }

    pub async fn tx(&self) -> TenantTx {
        self.tx_in(self.tenant).await
    }

    pub async fn tx_in(&self, tenant: TenantId) -> TenantTx {
        TenantTx::begin(&self.kdb, tenant, Actor::System)
            .await
            .unwrap()
    }

    /// A person of the tenant (their edits lock fields).
    pub async fn person(&self) -> TenantTx {
        TenantTx::begin(&self.kdb, self.tenant, Actor::User(self.user))
            .await
            .unwrap()
    }

    pub async fn connect(&self, provider: &str, public_token: Option<&str>) -> Connection {
        self.connect_in(self.tenant, provider, public_token).await
    }

    pub async fn connect_in(
        &self,
        tenant: TenantId,
        provider: &str,
        public_token: Option<&str>,
    ) -> Connection {
        let (connection, replayed) = self
            .banking
            .connect(
                self.tx_in(tenant).await,
                provider,
                public_token,
                &[],
                None,
                Fingerprint::new("test", b""),
            )
            .await
            .unwrap();
        assert!(!replayed);
        connection
    }

    /// A Plaid item and its connection: (connection, the item's access token).
    pub async fn connect_plaid(&self) -> (Connection, String) {
        let public = self.plaid.create_item();
        let item = self.plaid.item_id_of(&public);
        let connection = self.connect("plaid", Some(&public)).await;
        (connection, item)
    }

    pub async fn sync(&self, id: Uuid) -> SyncRun {
        self.banking
            .sync(&self.kdb, self.tenant, id, None)
            .await
            .unwrap_or_else(|e| panic!("the sync failed: {e:?}"))
    }

    pub async fn connection(&self, id: Uuid) -> Connection {
        let mut tx = self.tx().await;
        let c = self.banking.connection(&mut tx, id).await.unwrap();
        tx.commit().await.unwrap();
        c
    }

    /// Every transaction of an account, deleted ones too, oldest first.
    pub async fn rows(&self, account: Uuid) -> Vec<Row> {
        let mut tx = self.tx().await;
        let rows = sqlx::query_as::<_, Row>(
            "SELECT id, external_id, amount, status, date, merchant, description, category_id,
                    notes, deleted_at IS NOT NULL AS deleted, source
               FROM transactions WHERE tenant_id = $1 AND account_id = $2 ORDER BY date, id",
        )
        .bind(self.tenant.as_uuid())
        .bind(account)
        .fetch_all(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    }

    pub async fn live(&self, account: Uuid) -> Vec<Row> {
        self.rows(account)
            .await
            .into_iter()
            .filter(|r| !r.deleted)
            .collect()
    }

    pub async fn account(&self, id: Uuid) -> ledger::Account {
        let mut tx = self.tx().await;
        let a = self.ledger.account(&mut tx, id).await.unwrap();
        tx.commit().await.unwrap();
        a
    }

    /// The payloads of the tenant's audit events of `kind`, oldest first.
    pub async fn events(&self, kind: &str) -> Vec<Value> {
        let mut tx = self.tx().await;
        let rows: Vec<(Value,)> = sqlx::query_as(
            "SELECT (canonical::jsonb)->'payload' FROM events WHERE tenant_id = $1 AND type = $2 ORDER BY seq",
        )
        .bind(self.tenant.as_uuid())
        .bind(kind)
        .fetch_all(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows.into_iter().map(|(p,)| p).collect()
    }

    /// Every audit payload and job payload of the tenant, as one text (for leak checks).
    pub async fn everything_written(&self) -> String {
        let mut tx = self.tx().await;
        let events: Vec<(Value,)> =
            sqlx::query_as("SELECT canonical::jsonb FROM events WHERE tenant_id = $1")
                .bind(self.tenant.as_uuid())
                .fetch_all(tx.conn())
                .await
                .unwrap();
        let jobs: Vec<(Value, Option<String>)> =
            sqlx::query_as("SELECT payload, last_error FROM jobs WHERE tenant_id = $1")
                .bind(self.tenant.as_uuid())
                .fetch_all(tx.conn())
                .await
                .unwrap();
        tx.commit().await.unwrap();
        format!("{events:?} {jobs:?}")
    }

    /// The raw sealed token of a connection.
    pub async fn ciphertext(&self, tenant: TenantId, id: Uuid) -> Option<Vec<u8>> {
        let mut tx = self.tx_in(tenant).await;
        let (c,): (Option<Vec<u8>>,) = sqlx::query_as(
            "SELECT token_ciphertext FROM bank_connections WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_uuid())
        .bind(id)
        .fetch_one(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        c
    }

    pub async fn set_ciphertext(&self, tenant: TenantId, id: Uuid, c: &[u8]) {
        let mut tx = self.tx_in(tenant).await;
        sqlx::query(
            "UPDATE bank_connections SET token_ciphertext = $3 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_uuid())
        .bind(id)
        .bind(c)
        .execute(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    /// The stored cursor of a connection.
    pub async fn cursor(&self, id: Uuid) -> Option<String> {
        let mut tx = self.tx().await;
        let (c,): (Option<String>,) =
            sqlx::query_as("SELECT cursor FROM bank_connections WHERE tenant_id = $1 AND id = $2")
                .bind(self.tenant.as_uuid())
                .bind(id)
                .fetch_one(tx.conn())
                .await
                .unwrap();
        tx.commit().await.unwrap();
        c
    }
}

/// The applied report of a sync that must have applied.
pub fn applied(run: SyncRun) -> banking::SyncReport {
    match run {
        SyncRun::Applied(report) => report,
        other => panic!("the sync did not apply: {other:?}"),
    }
}
