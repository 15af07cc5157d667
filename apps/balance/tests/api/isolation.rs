//! Row-level security, exercised with hand-written SQL as the runtime role: a handler bug
//! cannot leak another tenant's rows, because the database refuses.

use sqlx::{Connection, Executor, PgConnection};

use crate::helpers::{TestApp, seed};

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn affected(conn: &mut PgConnection, sql: &str) -> u64 {
    conn.execute(sqlx::AssertSqlSafe(sql.to_string()))
        .await
        .unwrap()
        .rows_affected()
}

async fn refused(conn: &mut PgConnection, sql: &str) -> bool {
    conn.execute("SAVEPOINT attempt").await.unwrap();
    let result = conn.execute(sqlx::AssertSqlSafe(sql.to_string())).await;
    conn.execute("ROLLBACK TO SAVEPOINT attempt").await.unwrap();
    match result {
        Ok(_) => false,
        Err(e) => {
            assert!(
                e.to_string().contains("row-level security"),
                "refused for another reason: {e}"
            );
            true
        }
    }
}

#[tokio::test]
async fn a_tenant_context_confines_every_command_to_that_tenant() {
    let app = TestApp::spawn().await;
    let (a, b) = (
        seed::tenant(&app.kernel_db, "A").await,
        seed::tenant(&app.kernel_db, "B").await,
    );
    let (u1, u2) = (
        seed::user(&app.kernel_db).await,
        seed::user(&app.kernel_db).await,
    );
    seed::member(&app.kernel_db, a, u1, &["owner"]).await;
    seed::member(&app.kernel_db, b, u1, &["viewer"]).await;
    seed::member(&app.kernel_db, b, u2, &["owner"]).await;

    let mut conn = PgConnection::connect(&app.db.runtime_url).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('balance.tenant_id', '{a}', true)"
    )))
    .await
    .unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM memberships").await,
        1
    );
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) FROM memberships WHERE tenant_id = '{b}'")
        )
        .await,
        0
    );
    assert_eq!(
        affected(
            &mut conn,
            &format!("UPDATE memberships SET roles = '{{admin}}' WHERE tenant_id = '{b}'")
        )
        .await,
        0
    );
    assert_eq!(
        affected(
            &mut conn,
            &format!("DELETE FROM memberships WHERE tenant_id = '{b}'")
        )
        .await,
        0
    );
    assert!(
        refused(
            &mut conn,
            &format!("INSERT INTO memberships (tenant_id, user_id) VALUES ('{b}', '{u2}')")
        )
        .await
    );
    assert!(
        refused(
            &mut conn,
            &format!("UPDATE memberships SET tenant_id = '{b}' WHERE tenant_id = '{a}'")
        )
        .await
    );
    assert!(
        refused(
            &mut conn,
            &format!("INSERT INTO idempotency_keys (tenant_id, key, fingerprint, expires_at) VALUES ('{b}', 'k', '\\x00', now())")
        )
        .await
    );
    conn.execute("ROLLBACK").await.unwrap();

    // B's rows are untouched.
    conn.execute(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('balance.tenant_id', '{b}', true)"
    )))
    .await
    .unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM memberships WHERE 'viewer' = ANY(roles) OR 'owner' = ANY(roles)"
        )
        .await,
        2
    );
    conn.execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn without_a_context_nothing_is_visible_and_nothing_can_be_written() {
    let app = TestApp::spawn().await;
    let a = seed::tenant(&app.kernel_db, "A").await;
    let u = seed::user(&app.kernel_db).await;
    seed::member(&app.kernel_db, a, u, &["owner"]).await;

    let mut conn = PgConnection::connect(&app.db.runtime_url).await.unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM memberships").await,
        0
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM idempotency_keys").await,
        0
    );
    conn.execute("BEGIN").await.unwrap();
    assert!(
        refused(
            &mut conn,
            &format!("INSERT INTO memberships (tenant_id, user_id) VALUES ('{a}', '{u}')")
        )
        .await
    );
    assert_eq!(affected(&mut conn, "DELETE FROM memberships").await, 0);
    conn.execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn a_context_left_on_a_pooled_connection_does_not_leak_into_the_next_transaction() {
    let app = TestApp::spawn().await;
    let a = seed::tenant(&app.kernel_db, "A").await;
    let u = seed::user(&app.kernel_db).await;
    seed::member(&app.kernel_db, a, u, &["owner"]).await;

    // One connection, as a pool hands the same one out again.
    let mut conn = PgConnection::connect(&app.db.runtime_url).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('balance.tenant_id', '{a}', true)"
    )))
    .await
    .unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM memberships").await,
        1
    );
    conn.execute("COMMIT").await.unwrap();
    // The setting is now the empty string, not NULL: the policies' NULLIF handles it.
    let leftover: Option<String> =
        sqlx::query_scalar("SELECT current_setting('balance.tenant_id', true)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(leftover.as_deref(), Some(""));
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM memberships").await,
        0
    );
    conn.execute("BEGIN").await.unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM memberships").await,
        0
    );
    conn.execute("COMMIT").await.unwrap();

    // The same through the kernel's handles on a one-connection pool.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&app.db.runtime_url)
        .await
        .unwrap();
    let db = kernel::Db::new(pool);
    let mut tx = kernel::TenantTx::begin(&db, a, kernel::Actor::System)
        .await
        .unwrap();
    assert_eq!(
        count(tx.conn(), "SELECT count(*) FROM memberships").await,
        1
    );
    tx.commit().await.unwrap();
    let mut tx = kernel::SystemTx::begin(&db, kernel::Actor::System)
        .await
        .unwrap();
    assert_eq!(
        count(tx.conn(), "SELECT count(*) FROM memberships").await,
        0,
        "SystemTx sees no tenant rows"
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_user_inside_a_tenant_does_not_see_their_own_rows_of_another_tenant() {
    let app = TestApp::spawn().await;
    let (a, b) = (
        seed::tenant(&app.kernel_db, "A").await,
        seed::tenant(&app.kernel_db, "B").await,
    );
    let (me, other) = (
        seed::user(&app.kernel_db).await,
        seed::user(&app.kernel_db).await,
    );
    seed::member(&app.kernel_db, a, me, &["owner"]).await;
    seed::member(&app.kernel_db, b, me, &["viewer"]).await;
    seed::member(&app.kernel_db, b, other, &["owner"]).await;

    let mut conn = PgConnection::connect(&app.db.runtime_url).await.unwrap();
    // As a user with no tenant (UserTx): my memberships across tenants, nobody else's.
    conn.execute(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('balance.user_id', '{me}', true)"
    )))
    .await
    .unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM memberships").await,
        2
    );
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) FROM memberships WHERE user_id = '{other}'")
        )
        .await,
        0
    );
    conn.execute("ROLLBACK").await.unwrap();

    // As the same user inside tenant A (TenantTx): A's rows only, not my row of B.
    conn.execute(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('balance.user_id', '{me}', true), set_config('balance.tenant_id', '{a}', true)"
    )))
    .await
    .unwrap();
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) FROM memberships WHERE user_id = '{me}'")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) FROM memberships WHERE tenant_id = '{b}'")
        )
        .await,
        0
    );
    conn.execute("ROLLBACK").await.unwrap();

    // The user policy grants reads only.
    conn.execute(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('balance.user_id', '{me}', true)"
    )))
    .await
    .unwrap();
    assert_eq!(
        affected(
            &mut conn,
            &format!("UPDATE memberships SET roles = '{{owner}}' WHERE user_id = '{me}'")
        )
        .await,
        0
    );
    assert_eq!(
        affected(
            &mut conn,
            &format!("DELETE FROM memberships WHERE user_id = '{me}'")
        )
        .await,
        0
    );
    conn.execute("ROLLBACK").await.unwrap();
}
