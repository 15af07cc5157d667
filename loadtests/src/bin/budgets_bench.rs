//! Budgets (issue 25, item 7): a tenant with `ROWS` transactions (default 100,000) in one
//! month over 5 accounts (one in USD) and 50 expense categories, and 50 budgets (one per
//! category, every fifth over all spending or in USD). Times, `RUNS` times each (default 20):
//! the evaluation of every budget of the tenant, the progress of one budget (p50/p99 of 200
//! reads), and as the reference a plain `SELECT sum(amount)` over the same month's rows.
//!
//! Run through `loadtests/budgets.sh` (it starts the cluster and sets the test variables).

use std::{sync::Arc, time::Instant};

use audit::{AuditLog, Keys};
use budgets::{Budgets, NewBudget, period::Period};
use chrono::NaiveDate;
use kernel::{Actor, Currency, TenantTx};
use ledger::{
    AccountKind, Fingerprint, Incoming, Ledger, NewAccount, NewCategory, TransactionSource,
    TransactionStatus,
};
use sqlx::Connection;
use testkit::{db::TestDb, seed};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    percentile(&samples, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(100_000);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let db = TestDb::migrated(jobs::SCHEMA_SALT, |t| async move {
        kernel::migrate::migrate(&t.owner_url, &t.runtime_url).await?;
        jobs::setup(&t.owner_url).await?;
        Ok(())
    })
    .await?;
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await?;
    fx::seed_history(&mut owner)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = Keys::from_seeds([("bench", &[7u8; 32][..])])?;
    let audit: Arc<dyn kernel::CommitHook> = Arc::new(AuditLog::new(keys));
    let jobs_hook: Arc<dyn kernel::CommitHook> =
        Arc::new(jobs::JobsHook::new(&jobs::default_queues()));
    let kdb = db.kernel_db([audit, jobs_hook]).await?;
    let tenant = seed::tenant(&kdb, "Bench").await;
    let ledger = Ledger::new();
    let fx =
        fx::Fx::new(kdb.clone(), fx::FxConfig::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let budgets = Budgets::new(kdb.clone(), ledger.clone(), fx);

    let month = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
    let mut accounts = Vec::new();
    for (i, code) in ["EUR", "EUR", "EUR", "EUR", "USD"].iter().enumerate() {
        let a = ledger
            .create_account(
                &mut tx,
                NewAccount {
                    name: kernel::DisplayName::parse("name", &format!("Account {i}"))
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                    kind: AccountKind::Checking,
                    currency: Currency::parse(code)?,
                    opening_balance: 0,
                    opening_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                    iban: None,
                    institution: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        accounts.push(a);
    }
    let mut categories = Vec::new();
    for i in 0..50 {
        let c = ledger
            .create_category(
                &mut tx,
                NewCategory {
                    name: kernel::DisplayName::parse("name", &format!("Bench category {i:02}"))
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                    kind: ledger::CategoryKind::Expense,
                    parent_id: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        categories.push(c.id);
    }
    tx.commit().await?;
    let per_account = rows / accounts.len();
    for account in &accounts {
        let incoming: Vec<Incoming> = (0..per_account)
            .map(|i| {
                let date = month + chrono::Days::new((i % 30) as u64);
                let amount = -((i as i64 * 7919) % 20_000 + 100);
                let text = format!("purchase {i}");
                Incoming {
                    date,
                    value_date: None,
                    amount,
                    merchant: Some(format!("Shop {}", i % 500)),
                    description: text.clone(),
                    status: TransactionStatus::Posted,
                    external_id: None,
                    fingerprint: Fingerprint::of(
                        account.id,
                        date,
                        amount,
                        account.currency,
                        &text,
                        0,
                    ),
                }
            })
            .collect();
        let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
        for chunk in incoming.chunks(5_000) {
            ledger
                .ingest(&mut tx, account.id, TransactionSource::Import, None, chunk)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        tx.commit().await?;
    }
    // Categories spread over the rows (set directly: the benchmark's data, not a product path).
    let mut superuser = sqlx::PgConnection::connect(&db.superuser_url).await?;
    sqlx::query("UPDATE transactions SET category_id = ($2::uuid[])[1 + abs(hashtext(id::text)) % 50] WHERE tenant_id = $1")
        .bind(tenant)
        .bind(&categories)
        .execute(&mut superuser)
        .await?;
    sqlx::query("VACUUM ANALYZE transactions")
        .execute(&mut superuser)
        .await?;
    sqlx::query("ANALYZE").execute(&mut superuser).await?;

    let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
    let mut ids = Vec::new();
    for (i, category) in categories.iter().enumerate() {
        let b = budgets
            .create(
                &mut tx,
                NewBudget {
                    name: format!("Budget {i}"),
                    category_id: (i % 5 != 0).then_some(*category),
                    include_children: true,
                    account_ids: None,
                    period: Period::Monthly,
                    start_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                    amount: 5_000_000,
                    currency: Currency::parse(if i % 7 == 0 { "USD" } else { "EUR" })?,
                    rollover: false,
                    thresholds: vec![80, 100, 120],
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        ids.push(b.id);
    }
    tx.commit().await?;
    let on = NaiveDate::from_ymd_opt(2026, 10, 30).unwrap();
    println!("== {rows} transactions in {month} over 5 accounts and 50 categories; 50 budgets");

    let mut reference = Vec::new();
    let mut evaluate = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
        let _: Option<i64> = sqlx::query_scalar(
            "SELECT sum(amount)::bigint FROM transactions WHERE tenant_id = $1 AND date >= $2 AND date < $3",
        )
        .bind(tenant)
        .bind(month)
        .bind(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap())
        .fetch_one(tx.conn())
        .await?;
        tx.commit().await?;
        reference.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        budgets
            .evaluate_at(tenant, Some(on))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        evaluate.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let mut progress = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
        budgets
            .progress(&mut tx, ids[i % ids.len()], Some(on))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        tx.commit().await?;
        progress.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    progress.sort_by(f64::total_cmp);
    println!(
        "SELECT sum(amount) over the month   median {:>8.1} ms",
        median_ms(reference)
    );
    println!(
        "evaluate all 50 budgets             median {:>8.1} ms",
        median_ms(evaluate)
    );
    println!(
        "progress of one budget              p50 {:>8.1} ms  p99 {:>8.1} ms",
        percentile(&progress, 0.5),
        percentile(&progress, 0.99)
    );
    Ok(())
}
