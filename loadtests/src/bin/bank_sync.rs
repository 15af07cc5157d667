//! Bank sync end to end (issue 23, item 8): `ROWS` transactions (default 10,000) synced from
//! the Plaid stand-in in pages of 500 — real HTTP, Plaid's JSON, the Plaid client, one
//! transaction applying every page with the cursor — next to the same rows imported as a CSV
//! file through the imports service into another account on the same cluster in the same
//! run; then a re-sync of the same data from the first cursor, which must find every row
//! already there.
//!
//! Run through `loadtests/banking.sh` (it starts the cluster and sets the test variables).

use std::{sync::Arc, time::Instant};

use audit::{AuditLog, Keys};
use banking::{Banking, BankingConfig, Provider, SyncRun, plaid::Plaid, plaid::PlaidConfig};
use chrono::NaiveDate;
use kernel::{Actor, Currency, DisplayName, Secret, TenantTx, idempotency::Fingerprint};
use ledger::{AccountKind, Ledger, NewAccount};
use testkit::{
    db::TestDb,
    plaid::{PlaidAccount, PlaidStandIn, PlaidTx},
    seed,
};

/// A small deterministic generator (no seeding crate needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("BENCH_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
            .init();
    }
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10_000);
    let db = TestDb::migrated(jobs::SCHEMA_SALT, |t| async move {
        kernel::migrate::migrate(&t.owner_url, &t.runtime_url).await?;
        jobs::setup(&t.owner_url).await?;
        Ok(())
    })
    .await?;
    let keys = Keys::from_seeds([("bench", &[7u8; 32][..])])?;
    let audit: Arc<dyn kernel::CommitHook> = Arc::new(AuditLog::new(keys));
    let jobs_hook: Arc<dyn kernel::CommitHook> =
        Arc::new(jobs::JobsHook::new(&jobs::default_queues()));
    let kdb = db.kernel_db([audit, jobs_hook]).await?;
    let tenant = seed::tenant(&kdb, "Bench").await;
    let ledger = Ledger::new();
    let vault = Arc::new(vault::Vault::new([("k1", &[1u8; 32][..])])?);

    let plaid = PlaidStandIn::start().await?;
    let checking = PlaidAccount::new("Checking", "depository", "checking");
    let public = plaid.create_item_with(vec![checking.clone()]);
    let item = plaid.item_id_of(&public);
    let mut rng = Lcg(7);
    let names: Vec<String> = (0..2_000).map(|i| format!("MERCHANT {i:04}")).collect();
    let mut csv = String::from("Date,Amount,Payee,Description\n");
    let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    for i in 0..rows {
        let date = start + chrono::Days::new((i * 365 / rows) as u64);
        let cents = 1 + rng.next() % 50_000;
        let name = &names[(rng.next() % names.len() as u64) as usize];
        let literal = format!("{}.{:02}", cents / 100, cents % 100);
        plaid.add(
            &item,
            PlaidTx::new(
                format!("tx{i:06}"),
                &checking.account_id,
                &literal,
                date.to_string(),
                format!("{name} CARD PAYMENT REF{i}"),
            )
            .merchant(name.clone()),
        );
        // The same rows in our sign, for the import.
        csv.push_str(&format!(
            "{date},-{literal},{name},{name} CARD PAYMENT REF{i}\n"
        ));
    }

    let client = Plaid::new(PlaidConfig::new(
        plaid.url(),
        testkit::plaid::CLIENT_ID,
        Secret::new(testkit::plaid::SECRET.to_string()),
    ));
    let providers: Vec<Arc<dyn Provider>> = vec![Arc::new(client)];
    let banking = Banking::new(
        kdb.clone(),
        ledger.clone(),
        vault,
        BankingConfig::default(),
        providers,
    );
    let tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
    let (connection, _) = banking
        .connect(
            tx,
            "plaid",
            Some(&public),
            &[],
            None,
            Fingerprint::new("bench", b""),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;

    println!("== {rows} transactions from the Plaid stand-in, pages of 500");
    let started = Instant::now();
    let run = banking
        .sync(&kdb, tenant, connection.id, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let took = started.elapsed();
    let SyncRun::Applied(report) = run else {
        anyhow::bail!("the sync did not apply: {run:?}");
    };
    anyhow::ensure!(report.added == rows as u64, "added {report:?}");
    println!(
        "bank sync      {:>8.2} s  {:>8.0} transactions/s  ({} pages)",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64(),
        report.pages
    );

    // The same data again from the first cursor: everything is there already.
    let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
    if std::env::var_os("BENCH_EXPLAIN").is_some() {
        let ids: Vec<String> = (0..2000)
            .map(|i| format!("plaid.{item}:tx{i:06}"))
            .collect();
        let account = connection.accounts[0].account_id;
        let plan: Vec<(String,)> = sqlx::query_as(
            "EXPLAIN ANALYZE SELECT t.external_id, t.id FROM unnest($3::text[]) AS e(external_id)
               JOIN transactions t ON t.tenant_id = $1 AND t.account_id = $2
                                  AND t.external_id IS NOT NULL AND t.external_id = e.external_id",
        )
        .bind(tenant.as_uuid())
        .bind(account)
        .bind(&ids)
        .fetch_all(tx.conn())
        .await?;
        for (line,) in plan {
            println!("  {line}");
        }
    }
    sqlx::query("UPDATE bank_connections SET cursor = NULL WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_uuid())
        .bind(connection.id)
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    let started = Instant::now();
    let run = banking
        .sync(&kdb, tenant, connection.id, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let took = started.elapsed();
    let SyncRun::Applied(again) = run else {
        anyhow::bail!("the re-sync did not apply: {run:?}");
    };
    anyhow::ensure!(
        again.present == rows as u64 && again.added == 0,
        "re-sync {again:?}"
    );
    println!(
        "re-sync        {:>8.2} s  {:>8.0} transactions/s  (all {} present, none added)",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64(),
        again.present
    );

    // The reference: the same rows as a CSV import into another account.
    let imports = imports::Imports::new(ledger.clone());
    let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
    let account = ledger
        .create_account(
            &mut tx,
            NewAccount {
                name: DisplayName::parse("name", "Imported")
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
                kind: AccountKind::Checking,
                currency: Currency::parse("USD")?,
                opening_balance: 0,
                opening_date: NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
                iban: None,
                institution: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    tx.commit().await?;
    let started = Instant::now();
    let mut tx = TenantTx::begin(&kdb, tenant, Actor::System).await?;
    let mut upload = imports
        .start(
            &mut tx,
            imports::NewImport {
                account_id: account.id,
                format: None,
                mapping: None,
                profile_id: None,
                preview: false,
                skip_rejected: false,
                file_name: Some("bench.csv".into()),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for piece in csv.as_bytes().chunks(1 << 20) {
        imports
            .write(&mut tx, &mut upload, piece)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let created = imports
        .finish(&mut tx, upload)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    tx.commit().await?;
    imports
        .run(&kdb, tenant, created.import_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let took = started.elapsed();
    println!(
        "CSV import     {:>8.2} s  {:>8.0} rows/s  (reference: same rows, same cluster)",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64()
    );
    Ok(())
}
