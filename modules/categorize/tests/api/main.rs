//! The categorization through its service, without HTTP: transactions arrive through the
//! ledger (which queues `categorize.run` in the writing transaction), a test runs the queued
//! job as the worker would, and reads what the run wrote from the database.
//!
//! Every test has its own database, migrated with the platform's migrations and the job
//! queue's schema (the jobs commit hook writes `apalis.jobs` and `jobs` rows).

mod accuracy;
mod approvals;
mod arrivals;
mod llm;
mod locked;
mod pipeline;
mod preview;

use std::{collections::HashMap, sync::Arc};

use audit::{AuditLog, Keys};
use categorize::{
    Categorizer, NewRule, Rule, Run, RunSummary,
    rules::{Actions, Condition, Conditions, Field, Match, Operator, Sign, SplitShare},
};
use chrono::NaiveDate;
use imports::Imports;
use kernel::{Actor, Currency, Db, DisplayName, Keyset, TenantId, TenantTx, UserId};
use ledger::{
    AccountKind, Editor, Iban, Ledger, NewAccount, NewTransaction, Transaction, TransactionChanges,
    TransactionFilter, TransactionSource, TransactionStatus,
};
use serde_json::Value;
use testkit::{db::TestDb, seed};
use uuid::Uuid;

pub struct Env {
    _db: TestDb,
    pub kdb: Db,
    pub ledger: Ledger,
    pub categorizer: Categorizer,
    pub imports: Imports,
    pub tenant: TenantId,
    /// A member of the tenant, for a person's edits and decisions.
    pub user: UserId,
    /// The tenant's seeded categories by their own name ("Hosting", "Software").
    pub categories: HashMap<String, Uuid>,
    /// An EUR checking account with an IBAN.
    pub account: Uuid,
}

pub const IBAN: &str = "DE89370400440532013000";

impl Env {
    pub async fn new() -> Env {
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
        let ledger = Ledger::new().with_arrivals(Categorizer::arrivals());
        let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await.unwrap();
        ledger.seed_categories(&mut tx).await.unwrap();
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, name FROM categories WHERE tenant_id = $1")
                .bind(tenant.as_uuid())
                .fetch_all(tx.conn())
                .await
                .unwrap();
        let account = ledger
            .create_account(
                &mut tx,
                NewAccount {
                    name: DisplayName::parse("name", "Operating").unwrap(),
                    kind: AccountKind::Checking,
                    currency: Currency::parse("EUR").unwrap(),
                    opening_balance: 0,
                    opening_date: NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
                    iban: Some(Iban::parse("iban", IBAN).unwrap()),
                    institution: None,
                },
            )
            .await
            .unwrap()
            .id;
        tx.commit().await.unwrap();
        Env {
            _db: db,
            kdb,
            categorizer: Categorizer::new(ledger.clone()),
            imports: Imports::new(ledger.clone()),
            ledger,
            tenant,
            user,
            categories: rows.into_iter().map(|(id, name)| (name, id)).collect(),
            account,
        }
    }

    /// The id of a seeded category by its own name.
    pub fn cat(&self, name: &str) -> Uuid {
        *self
            .categories
            .get(name)
            .unwrap_or_else(|| panic!("no category {name}"))
    }

    pub async fn tx(&self) -> TenantTx {
        TenantTx::begin(&self.kdb, self.tenant, Actor::System)
            .await
            .unwrap()
    }

    /// A transaction acting as the tenant's member.
    pub async fn person(&self) -> TenantTx {
        TenantTx::begin(&self.kdb, self.tenant, Actor::User(self.user))
            .await
            .unwrap()
    }

    /// Enters a transaction as a person would (source manual), committed.
    pub async fn enter(&self, new: NewTransaction) -> Transaction {
        let mut tx = self.tx().await;
        let t = self
            .ledger
            .create_transaction(&mut tx, new, TransactionSource::Manual)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        t
    }

    /// An uncategorised expense entered by hand (which queues the pipeline).
    pub async fn spend(&self, merchant: &str, description: &str, amount: i64) -> Uuid {
        self.enter(new_tx(
            self.account,
            day(1),
            Some(merchant),
            description,
            amount,
        ))
        .await
        .id
    }

    /// A categorised transaction of the history: it came with a file's category (source
    /// import, no decision recorded), so it weighs as an import in the similarity.
    pub async fn history(
        &self,
        merchant: &str,
        description: &str,
        amount: i64,
        category: &str,
    ) -> Uuid {
        let mut new = new_tx(self.account, day(0), Some(merchant), description, amount);
        new.category_id = Some(self.cat(category));
        let mut tx = self.tx().await;
        let t = self
            .ledger
            .create_transaction(&mut tx, new, TransactionSource::Import)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        t.id
    }

    pub async fn transaction(&self, id: Uuid) -> Transaction {
        let mut tx = self.tx().await;
        let t = self.ledger.transaction(&mut tx, id).await.unwrap();
        tx.commit().await.unwrap();
        t
    }

    /// A person's edit of the category (locks it).
    pub async fn choose(&self, id: Uuid, category: &str) -> Transaction {
        let mut tx = self.person().await;
        let t = self
            .ledger
            .update_transaction(
                &mut tx,
                id,
                None,
                TransactionChanges {
                    category_id: Some(Some(self.cat(category))),
                    ..TransactionChanges::default()
                },
                Editor::Person,
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        t
    }

    pub async fn rule(
        &self,
        name: &str,
        position: Option<i32>,
        conditions: Conditions,
        actions: Actions,
    ) -> Rule {
        self.new_rule(NewRule {
            name: name.into(),
            position,
            enabled: true,
            conditions,
            actions,
        })
        .await
    }

    pub async fn new_rule(&self, new: NewRule) -> Rule {
        let mut tx = self.tx().await;
        let rule = self.categorizer.create_rule(&mut tx, new).await.unwrap();
        tx.commit().await.unwrap();
        rule
    }

    pub async fn rules(&self) -> Vec<Rule> {
        let mut tx = self.tx().await;
        let rules = self.categorizer.rules(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        rules
    }

    /// The queued `categorize.run` jobs of the tenant: (id, queue, payload), oldest first.
    pub async fn queued(&self) -> Vec<(Uuid, String, Value)> {
        let mut tx = self.tx().await;
        let rows: Vec<(Uuid, String, Value)> = sqlx::query_as(
            "SELECT id, queue, payload FROM jobs
             WHERE tenant_id = $1 AND kind = 'categorize.run' AND status = 'queued'
             ORDER BY created_at, id",
        )
        .bind(self.tenant.as_uuid())
        .fetch_all(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    }

    /// Runs every queued `categorize.run` job with `categorizer`, as the worker would, and
    /// marks it done; the summaries in queue order.
    pub async fn run_queued_with(&self, categorizer: &Categorizer) -> Vec<RunSummary> {
        let mut out = Vec::new();
        for (id, _, payload) in self.queued().await {
            let run: Run = serde_json::from_value(payload).unwrap();
            out.push(
                categorizer
                    .run(&self.kdb, self.tenant, &run, None)
                    .await
                    .unwrap_or_else(|e| panic!("the run {run:?} failed: {e:?}")),
            );
            let mut tx = self.tx().await;
            sqlx::query("UPDATE jobs SET status = 'succeeded' WHERE tenant_id = $1 AND id = $2")
                .bind(self.tenant.as_uuid())
                .bind(id)
                .execute(tx.conn())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        out
    }

    pub async fn run_queued(&self) -> Vec<RunSummary> {
        self.run_queued_with(&self.categorizer).await
    }

    /// One run, directly.
    pub async fn run(&self, run: Run) -> RunSummary {
        self.categorizer
            .run(&self.kdb, self.tenant, &run, None)
            .await
            .unwrap()
    }

    /// Audit events of `kind`: (source_agent, actor_kind, payload), oldest first.
    pub async fn events(&self, kind: &str) -> Vec<(String, String, Value)> {
        let mut tx = self.tx().await;
        let rows: Vec<(String, String, Value)> = sqlx::query_as(
            "SELECT source_agent, actor_kind, canonical::jsonb -> 'payload' FROM events
             WHERE tenant_id = $1 AND type = $2 ORDER BY seq",
        )
        .bind(self.tenant.as_uuid())
        .bind(kind)
        .fetch_all(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        rows
    }

    /// Live transactions found by `q`.
    pub async fn search(&self, q: &str) -> Vec<Transaction> {
        let cursors = kernel::CursorSigner::from_pepper(&[7u8; 32]);
        let page = Keyset::parse(&cursors, "t", self.tenant, Some(100), None).unwrap();
        let mut tx = self.tx().await;
        let found = self
            .ledger
            .transactions(
                &mut tx,
                &TransactionFilter {
                    q: Some(q.into()),
                    include_transfers: true,
                    ..TransactionFilter::default()
                },
                &page,
            )
            .await
            .unwrap()
            .data;
        tx.commit().await.unwrap();
        found
    }

    pub fn keyset(&self) -> Keyset {
        let cursors = kernel::CursorSigner::from_pepper(&[7u8; 32]);
        Keyset::parse(&cursors, "a", self.tenant, Some(100), None).unwrap()
    }
}

/// 1 December 2026 plus `n` days.
pub fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap() + chrono::Days::new(n)
}

pub fn new_tx(
    account: Uuid,
    date: NaiveDate,
    merchant: Option<&str>,
    description: &str,
    amount: i64,
) -> NewTransaction {
    NewTransaction {
        account_id: account,
        date,
        value_date: None,
        amount,
        currency: None,
        merchant: merchant.map(str::to_string),
        description: description.into(),
        status: TransactionStatus::Posted,
        category_id: None,
        splits: Vec::new(),
        notes: None,
        tags: Vec::new(),
        external_id: None,
    }
}

// Rule definitions, as a person writes them.

pub fn cond(field: Field, op: Operator) -> Condition {
    Condition {
        field,
        op,
        value: None,
        amount: None,
        min: None,
        max: None,
        sign: None,
        account_id: None,
        days: None,
    }
}

pub fn text(field: Field, op: Operator, value: &str) -> Condition {
    Condition {
        value: Some(value.into()),
        ..cond(field, op)
    }
}

pub fn sign(sign: Sign) -> Condition {
    Condition {
        sign: Some(sign),
        ..cond(Field::Amount, Operator::Sign)
    }
}

pub fn all(items: Vec<Condition>) -> Conditions {
    Conditions {
        r#match: Match::All,
        items,
    }
}

pub fn any(items: Vec<Condition>) -> Conditions {
    Conditions {
        r#match: Match::Any,
        items,
    }
}

pub fn merchant_contains(value: &str) -> Conditions {
    all(vec![text(Field::Merchant, Operator::Contains, value)])
}

pub fn nothing() -> Actions {
    Actions {
        category_id: None,
        splits: None,
        tags: None,
        merchant: None,
        transfer: None,
    }
}

pub fn file_under(category: Uuid) -> Actions {
    Actions {
        category_id: Some(category),
        ..nothing()
    }
}

pub fn tag(tags: &[&str]) -> Actions {
    Actions {
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        ..nothing()
    }
}

pub fn split(shares: &[(Uuid, i64)]) -> Actions {
    Actions {
        splits: Some(
            shares
                .iter()
                .map(|&(category_id, percent)| SplitShare {
                    category_id,
                    percent,
                })
                .collect(),
        ),
        ..nothing()
    }
}
