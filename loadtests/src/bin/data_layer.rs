//! The cost of the row-scoped data layer (issue 9):
//!
//! 1. `TenantTx` begin + commit against a plain transaction on the same pool;
//! 2. a keyset page of 50 rows from a tenant with 1,000,000 rows in a table of 10,000,000,
//!    read as the runtime role under row-level security, with its plan.
//!
//! Run through `loadtests/data_layer.sh`, which starts a cluster, runs this, and runs
//! `pgbench -S` on the same cluster as the reference.

use std::time::Instant;

use anyhow::Context;
use kernel::{Actor, Db, TenantId, TenantTx};
use loadtests::report;
use sqlx::{Connection, Executor, PgConnection, postgres::PgPoolOptions};

const ROUNDS: usize = 5_000;
const BIG_TENANT_ROWS: i64 = 1_000_000;
const SMALL_TENANTS: i64 = 9_000;
const SMALL_TENANT_ROWS: i64 = 1_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let runtime_url = std::env::var("BALANCE_DATABASE_URL").context("BALANCE_DATABASE_URL")?;
    let owner_url =
        std::env::var("BALANCE_DATABASE_OWNER_URL").context("BALANCE_DATABASE_OWNER_URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&runtime_url)
        .await?;
    let db = Db::new(pool.clone());

    let mut owner = PgConnection::connect(&owner_url).await?;
    let tenant = TenantId::new();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'bench')")
        .bind(tenant)
        .execute(&mut owner)
        .await?;

    println!("== transaction handles ({ROUNDS} rounds each, interleaved, one connection)");
    let (mut plain, mut scoped) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    for i in 0..ROUNDS + 200 {
        let t = Instant::now();
        let tx = pool.begin().await?;
        tx.commit().await?;
        let p = t.elapsed();
        let t = Instant::now();
        let tx = TenantTx::begin(&db, tenant, Actor::System).await?;
        tx.commit().await?;
        let s = t.elapsed();
        if i >= 200 {
            plain.push(p);
            scoped.push(s);
        }
    }
    report("plain BEGIN + COMMIT", &mut plain);
    report("TenantTx::begin + commit", &mut scoped);

    println!("== keyset page of 50, 1M-row tenant in a 10M-row table, runtime role");
    load(&mut owner, tenant).await?;
    let mut samples = Vec::new();
    let mut tx = TenantTx::begin(&db, tenant, Actor::System).await?;
    let middle: (String, uuid::Uuid) = sqlx::query_as(
        "SELECT occurred_on::text, id FROM bench_rows WHERE tenant_id = $1 ORDER BY occurred_on DESC, id DESC OFFSET 500000 LIMIT 1",
    )
    .bind(tenant)
    .fetch_one(tx.conn())
    .await?;
    tx.commit().await?;
    const PAGE: &str = "SELECT id, occurred_on, amount, memo FROM bench_rows
         WHERE tenant_id = $1 AND (occurred_on, id) < ($2::date, $3)
         ORDER BY occurred_on DESC, id DESC LIMIT 51";
    for i in 0..1_200 {
        let mut tx = TenantTx::begin(&db, tenant, Actor::System).await?;
        let t = Instant::now();
        let rows = sqlx::query(PAGE)
            .bind(tenant)
            .bind(&middle.0)
            .bind(middle.1)
            .fetch_all(tx.conn())
            .await?;
        let d = t.elapsed();
        tx.commit().await?;
        assert_eq!(rows.len(), 51);
        if i >= 200 {
            samples.push(d);
        }
    }
    report("keyset page (query only, inside TenantTx)", &mut samples);

    let mut tx = TenantTx::begin(&db, tenant, Actor::System).await?;
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}",
        PAGE.replace("$1", &format!("'{tenant}'"))
            .replace("$2", &format!("'{}'", middle.0))
            .replace("$3", &format!("'{}'", middle.1))
    )))
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    println!("plan (as the runtime role):");
    for line in plan {
        println!("    {line}");
    }
    Ok(())
}

async fn load(owner: &mut PgConnection, big: TenantId) -> anyhow::Result<()> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('bench_rows') IS NOT NULL")
        .fetch_one(&mut *owner)
        .await?;
    if exists {
        owner.execute("DROP TABLE bench_rows").await?;
    }
    let started = Instant::now();
    owner
        .execute(
            "CREATE TABLE bench_rows (
                tenant_id uuid NOT NULL,
                id uuid NOT NULL,
                occurred_on date NOT NULL,
                amount bigint NOT NULL,
                memo text NOT NULL,
                PRIMARY KEY (tenant_id, id))",
        )
        .await?;
    // The big tenant, then many small ones; loaded before RLS is switched on.
    sqlx::query(
        "INSERT INTO bench_rows
         SELECT $1, gen_random_uuid(), date '2026-01-01' - (g % 3650)::int, (g % 20000) - 10000, md5(g::text)
         FROM generate_series(1, $2) g",
    )
    .bind(big)
    .bind(BIG_TENANT_ROWS)
    .execute(&mut *owner)
    .await?;
    sqlx::query(
        "INSERT INTO bench_rows
         SELECT t.id, gen_random_uuid(), date '2026-01-01' - (g % 3650)::int, (g % 20000) - 10000, md5(g::text)
         FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) t, generate_series(1, $2) g",
    )
    .bind(SMALL_TENANTS)
    .bind(SMALL_TENANT_ROWS)
    .execute(&mut *owner)
    .await?;
    owner
        .execute(
            "CREATE INDEX bench_rows_page ON bench_rows (tenant_id, occurred_on DESC, id DESC)",
        )
        .await?;
    owner
        .execute("SELECT balance_tenant_rls('bench_rows')")
        .await?;
    owner
        .execute("GRANT SELECT ON bench_rows TO balance_runtime")
        .await?;
    owner.execute("VACUUM ANALYZE bench_rows").await?;
    let rows: i64 =
        sqlx::query_scalar("SELECT reltuples::bigint FROM pg_class WHERE relname = 'bench_rows'")
            .fetch_one(&mut *owner)
            .await?;
    println!(
        "loaded ~{rows} rows in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
