//! Accounts and categories through the service, as a job or the bot calls it.

use std::sync::Arc;

use audit::{AuditLog, Keys};
use chrono::NaiveDate;
use kernel::{Actor, Currency, Db, DisplayName, Keyset, TenantTx};
use ledger::{
    AccountChanges, AccountKind, CategoryKind, Iban, Ledger, LedgerError, NewAccount, NewCategory,
};
use testkit::{db::TestDb, seed};

pub struct Env {
    _db: TestDb,
    pub kdb: Db,
    ledger: Ledger,
}

impl Env {
    pub async fn new() -> Env {
        let db = TestDb::with_migrations().await.unwrap();
        let keys = Keys::from_seeds([("test-1", &[11u8; 32][..])]).unwrap();
        let hook: Arc<dyn kernel::CommitHook> = Arc::new(AuditLog::new(keys));
        let kdb = db.kernel_db([hook]).await.unwrap();
        Env {
            _db: db,
            kdb,
            ledger: Ledger::new(),
        }
    }

    async fn tx(&self, tenant: kernel::TenantId) -> TenantTx {
        TenantTx::begin(&self.kdb, tenant, Actor::System)
            .await
            .unwrap()
    }
}

fn name(s: &str) -> DisplayName {
    DisplayName::parse("name", s).unwrap()
}

fn checking(opening: i64) -> NewAccount {
    NewAccount {
        name: name("Operating"),
        kind: AccountKind::Checking,
        currency: Currency::parse("EUR").unwrap(),
        opening_balance: opening,
        opening_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        iban: Some(Iban::parse("iban", "DE89 3704 0044 0532 0130 00").unwrap()),
        institution: None,
    }
}

#[tokio::test]
async fn an_account_opens_at_its_opening_balance_and_reports_it_every_day() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let mut tx = env.tx(tenant).await;
    let account = env
        .ledger
        .create_account(&mut tx, checking(12_345))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((account.balance, account.pending_balance), (12_345, 12_345));
    assert_eq!(account.iban.as_deref(), Some("DE89370400440532013000"));

    let mut tx = env.tx(tenant).await;
    let from = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
    let series = env
        .ledger
        .balances(&mut tx, account.id, Some(from), Some(to))
        .await
        .unwrap();
    assert_eq!(series.len(), 7);
    assert!(series.iter().all(|d| d.balance == 12_345));
    assert!(matches!(
        env.ledger
            .balances(&mut tx, account.id, Some(to), Some(from))
            .await,
        Err(LedgerError::Invalid(_))
    ));

    // Archive, then delete: an account without transactions goes.
    let archived = env
        .ledger
        .update_account(
            &mut tx,
            account.id,
            Some(account.version),
            AccountChanges {
                archived: Some(true),
                ..AccountChanges::default()
            },
        )
        .await
        .unwrap();
    assert!(archived.archived_at.is_some());
    assert_eq!(archived.version, account.version + 1);
    let stale = env
        .ledger
        .update_account(
            &mut tx,
            account.id,
            Some(account.version),
            AccountChanges::default(),
        )
        .await;
    assert!(matches!(stale, Err(LedgerError::Problem(p)) if p.status().as_u16() == 412));
    env.ledger
        .delete_account(&mut tx, account.id)
        .await
        .unwrap();
    assert!(matches!(
        env.ledger.account(&mut tx, account.id).await,
        Err(LedgerError::NotFound)
    ));
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn categories_start_with_the_default_set_and_keep_two_levels() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let mut tx = env.tx(tenant).await;
    env.ledger.seed_categories(&mut tx).await.unwrap();
    let cursors = kernel::CursorSigner::from_pepper(&[7u8; 32]);
    let page = Keyset::parse(&cursors, "t", tenant, Some(200), None).unwrap();
    let all = env.ledger.categories(&mut tx, &page).await.unwrap().data;
    let software = all.iter().find(|c| c.name == "Software").unwrap().clone();
    let hosting = all.iter().find(|c| c.name == "Hosting").unwrap().clone();
    assert_eq!(hosting.parent_id, Some(software.id));
    assert!(
        all.iter()
            .any(|c| c.name == "Transfers" && c.kind == CategoryKind::Transfer)
    );

    let deeper = env
        .ledger
        .create_category(
            &mut tx,
            NewCategory {
                name: name("Servers"),
                kind: CategoryKind::Expense,
                parent_id: Some(hosting.id),
            },
        )
        .await;
    assert!(matches!(deeper, Err(LedgerError::Invalid(f)) if f.field == "parent_id"));
    let wrong_kind = env
        .ledger
        .create_category(
            &mut tx,
            NewCategory {
                name: name("Refunds"),
                kind: CategoryKind::Income,
                parent_id: Some(software.id),
            },
        )
        .await;
    assert!(matches!(wrong_kind, Err(LedgerError::Invalid(f)) if f.field == "kind"));
    let taken = env
        .ledger
        .create_category(
            &mut tx,
            NewCategory {
                name: name("hosting"),
                kind: CategoryKind::Expense,
                parent_id: Some(software.id),
            },
        )
        .await;
    assert!(matches!(taken, Err(LedgerError::Invalid(f)) if f.field == "name"));
    // A parent with subcategories is in use.
    let in_use = env.ledger.delete_category(&mut tx, software.id, None).await;
    assert!(matches!(
        in_use,
        Err(LedgerError::CategoryInUse { children: 2, .. })
    ));
    env.ledger
        .delete_category(&mut tx, hosting.id, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}
