//! The kernel's transaction handles: what they set, what they carry, and the unit-of-work
//! hooks that later modules (audit, jobs) write through at commit.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use futures_util::{FutureExt, future::BoxFuture};
use kernel::{
    Actor, CommitHook, CommitParts, FirstRead, Literal, Problem, RequestContext, Statement,
    SystemTx, TenantTx, UserId, UserTx,
};
use sqlx::Row;

use crate::helpers::{TestApp, seed};

async fn setting(conn: &mut sqlx::PgConnection, name: &str) -> String {
    sqlx::query_scalar::<_, Option<String>>("SELECT current_setting($1, true)")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn memberships(db: &kernel::Db, tenant: kernel::TenantId) -> i64 {
    let mut tx = TenantTx::begin(db, tenant, Actor::System).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM memberships")
        .fetch_one(tx.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn each_handle_sets_exactly_its_scope() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let user = seed::user(&app.kernel_db).await;
    let key = uuid::Uuid::now_v7();

    let cases: Vec<(&str, kernel::Actor, String, String)> = vec![
        (
            "user in tenant",
            Actor::User(user),
            tenant.to_string(),
            user.to_string(),
        ),
        (
            "telegram in tenant",
            Actor::Telegram(user),
            tenant.to_string(),
            user.to_string(),
        ),
        (
            "api key in tenant",
            Actor::ApiKey(key),
            tenant.to_string(),
            String::new(),
        ),
        (
            "system in tenant",
            Actor::System,
            tenant.to_string(),
            String::new(),
        ),
    ];
    for (case, actor, want_tenant, want_user) in cases {
        let mut tx = TenantTx::begin(&app.kernel_db, tenant, actor)
            .await
            .unwrap();
        assert_eq!(
            setting(tx.conn(), "balance.tenant_id").await,
            want_tenant,
            "{case}"
        );
        assert_eq!(
            setting(tx.conn(), "balance.user_id").await,
            want_user,
            "{case}"
        );
        assert_eq!(tx.tenant_id(), tenant);
        assert_eq!(tx.context().actor, actor);
    }
    let mut tx = UserTx::begin(&app.kernel_db, user).await.unwrap();
    assert_eq!(setting(tx.conn(), "balance.tenant_id").await, "");
    assert_eq!(
        setting(tx.conn(), "balance.user_id").await,
        user.to_string()
    );
    let mut tx = SystemTx::begin(&app.kernel_db, Actor::System)
        .await
        .unwrap();
    assert_eq!(setting(tx.conn(), "balance.tenant_id").await, "");
    assert_eq!(setting(tx.conn(), "balance.user_id").await, "");
}

#[tokio::test]
async fn a_handle_dropped_without_commit_rolls_back() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let user = seed::user(&app.kernel_db).await;
    {
        let mut tx = TenantTx::begin(&app.kernel_db, tenant, Actor::System)
            .await
            .unwrap();
        sqlx::query("INSERT INTO memberships (tenant_id, user_id) VALUES ($1, $2)")
            .bind(tenant)
            .bind(user)
            .execute(tx.conn())
            .await
            .unwrap();
        // Dropped here, e.g. by a `?` further down a handler.
    }
    assert_eq!(memberships(&app.kernel_db, tenant).await, 0);
}

/// Connections of the database left inside a transaction, this one's aside: none once every
/// handle has ended (an abandoned one rolls back on a task of its own, so wait a little).
async fn left_in_a_transaction(db: &kernel::Db) -> i64 {
    testkit::eventually(std::time::Duration::from_secs(5), || async {
        let mut tx = SystemTx::begin(db, Actor::System).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()",
        )
        .fetch_one(tx.conn())
        .await
        .unwrap();
        (n == 0).then_some(0)
    })
    .await
    .unwrap_or(-1)
}

#[tokio::test]
async fn a_first_read_runs_inside_the_transaction_after_the_settings() {
    let app = TestApp::spawn().await;
    let (a, b) = (
        seed::tenant(&app.kernel_db, "A").await,
        seed::tenant(&app.kernel_db, "B").await,
    );
    let user = seed::user(&app.kernel_db).await;
    seed::member(&app.kernel_db, a, user, &["owner"]).await;
    seed::member(&app.kernel_db, b, user, &["owner"]).await;
    static READ: Statement = Statement::new(
        "SELECT current_setting('balance.tenant_id'), current_setting('balance.user_id'),
                pg_current_xact_id()::text, (SELECT count(*) FROM memberships), $1::text",
    );
    // The first use prepares the statement on the connection, later ones execute it.
    for _ in 0..3 {
        let read = FirstRead::new(&READ, &[Literal::Uuid(user.as_uuid())]);
        let (tx, rows) = TenantTx::begin_reading(&app.kernel_db, a, Actor::User(user), Some(read))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        tx.commit().await.unwrap();
    }
    let read = FirstRead::new(&READ, &[Literal::Uuid(user.as_uuid())]);
    let (mut tx, rows) = TenantTx::begin_reading(&app.kernel_db, a, Actor::User(user), Some(read))
        .await
        .unwrap();
    let row = &rows[0];
    assert_eq!(
        row.get::<String, _>(0),
        a.to_string(),
        "the tenant is set first"
    );
    assert_eq!(row.get::<String, _>(1), user.to_string());
    // Row-level security already confines the read to the tenant.
    assert_eq!(row.get::<i64, _>(3), 1);
    assert_eq!(row.get::<String, _>(4), user.to_string());
    let xact: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(xact, row.get::<String, _>(2), "one transaction");
    tx.commit().await.unwrap();
    assert_eq!(left_in_a_transaction(&app.kernel_db).await, 0);
}

#[tokio::test]
async fn a_failed_first_read_or_an_abandoned_handle_leaves_no_connection_in_a_transaction() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let user = seed::user(&app.kernel_db).await;
    static FAILS: Statement = Statement::new("SELECT 1 / 0");
    let read = FirstRead::new(&FAILS, &[]);
    let refused = TenantTx::begin_reading(&app.kernel_db, tenant, Actor::System, Some(read))
        .await
        .unwrap_err();
    assert_eq!(refused.status().as_u16(), 500);
    // Handles dropped mid-work: one with a write, one whose transaction a failed statement
    // aborted, one that only read.
    let mut held = Vec::new();
    for statement in [
        "INSERT INTO memberships (tenant_id, user_id) VALUES ($1, $2)",
        "SELECT $1::uuid, $2::uuid, 1 / 0",
        "SELECT $1::uuid, $2::uuid",
    ] {
        let mut tx = TenantTx::begin(&app.kernel_db, tenant, Actor::System)
            .await
            .unwrap();
        let _ = sqlx::query(statement)
            .bind(tenant)
            .bind(user)
            .execute(tx.conn())
            .await;
        held.push(tx);
    }
    drop(held);
    assert_eq!(left_in_a_transaction(&app.kernel_db).await, 0);
    assert_eq!(memberships(&app.kernel_db, tenant).await, 0);
    // The pool's connections serve new transactions as before.
    for _ in 0..30 {
        let mut tx = UserTx::begin(&app.kernel_db, user).await.unwrap();
        assert_eq!(setting(tx.conn(), "balance.tenant_id").await, "");
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn a_handle_carries_the_request_context() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let user = UserId::new();
    let ctx = Arc::new(RequestContext::http(
        "req-42".into(),
        "/api/v1/x".into(),
        Some("203.0.113.7".parse().unwrap()),
        Some("curl/8".into()),
    ));
    let db = app.kernel_db.clone();
    let context = ctx
        .scope(async move {
            let tx = TenantTx::begin(&db, tenant, Actor::User(user))
                .await
                .unwrap();
            tx.context().clone()
        })
        .await;
    assert_eq!(context.request_id, "req-42");
    assert_eq!(context.client_ip.unwrap().to_string(), "203.0.113.7");
    assert_eq!(context.user_agent.as_deref(), Some("curl/8"));
    assert_eq!(context.source_agent, "balance");
    assert_eq!(context.actor, Actor::User(user));
}

/// Buffers member ids during the unit of work and writes them at commit, the way the audit
/// log will buffer events.
struct WriteBuffered {
    calls: AtomicUsize,
    fail: bool,
}

#[derive(Default, Clone)]
struct Buffer(Vec<UserId>);

impl CommitHook for WriteBuffered {
    fn before_commit<'a>(&'a self, parts: CommitParts<'a>) -> BoxFuture<'a, Result<(), Problem>> {
        async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let kernel::Scope::Tenant(tenant) = parts.context.scope else {
                return Ok(());
            };
            let buffered = parts.extensions.remove::<Buffer>().unwrap_or_default();
            for user in buffered.0 {
                sqlx::query("INSERT INTO memberships (tenant_id, user_id) VALUES ($1, $2)")
                    .bind(tenant)
                    .bind(user)
                    .execute(&mut *parts.conn)
                    .await?;
            }
            if self.fail {
                Err(Problem::internal())
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}

#[tokio::test]
async fn commit_hooks_write_the_buffered_unit_of_work_inside_the_transaction() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let (u1, u2) = (
        seed::user(&app.kernel_db).await,
        seed::user(&app.kernel_db).await,
    );

    let hook = Arc::new(WriteBuffered {
        calls: AtomicUsize::new(0),
        fail: false,
    });
    let db = app.kernel_db.clone().with_hook(hook.clone());
    let mut tx = TenantTx::begin(&db, tenant, Actor::System).await.unwrap();
    tx.extensions_mut()
        .get_or_insert_default::<Buffer>()
        .0
        .push(u1);
    tx.commit().await.unwrap();
    assert_eq!(hook.calls.load(Ordering::SeqCst), 1);
    assert_eq!(memberships(&app.kernel_db, tenant).await, 1);

    // Not on rollback.
    let mut tx = TenantTx::begin(&db, tenant, Actor::System).await.unwrap();
    tx.extensions_mut()
        .get_or_insert_default::<Buffer>()
        .0
        .push(u2);
    drop(tx);
    assert_eq!(hook.calls.load(Ordering::SeqCst), 1);
    assert_eq!(memberships(&app.kernel_db, tenant).await, 1);

    // A failing hook rolls back the hook's writes and the unit of work's own.
    let failing = app.kernel_db.clone().with_hook(Arc::new(WriteBuffered {
        calls: AtomicUsize::new(0),
        fail: true,
    }));
    let mut tx = TenantTx::begin(&failing, tenant, Actor::System)
        .await
        .unwrap();
    sqlx::query("UPDATE memberships SET roles = '{admin}'")
        .execute(tx.conn())
        .await
        .unwrap();
    tx.extensions_mut()
        .get_or_insert_default::<Buffer>()
        .0
        .push(u2);
    assert!(tx.commit().await.is_err());
    assert_eq!(memberships(&app.kernel_db, tenant).await, 1);
    let mut tx = TenantTx::begin(&app.kernel_db, tenant, Actor::System)
        .await
        .unwrap();
    let roles: Vec<String> = sqlx::query_scalar("SELECT roles FROM memberships")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert!(
        roles.is_empty(),
        "the update was rolled back with the failing hook"
    );
}

#[tokio::test]
async fn warm_connections_never_starve_callers_queued_in_a_full_pool() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    // Two connections for twenty callers: most of them queue in the pool, and a connection
    // kept warm by one caller must still reach them (a starved caller times out in 2 s).
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect(&app.db.runtime_url)
        .await
        .unwrap();
    let db = kernel::Db::new(pool);
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let mut tx = TenantTx::begin(&db, tenant, Actor::System).await?;
                    sqlx::query("SELECT pg_sleep(0.001)")
                        .execute(tx.conn())
                        .await?;
                    tx.commit().await?;
                }
                Ok::<_, Problem>(())
            })
        })
        .collect();
    for caller in callers {
        caller
            .await
            .unwrap()
            .expect("no caller waits for a connection in vain");
    }
}
