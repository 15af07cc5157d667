//! The schema's life: migrating as the owner, creating and granting the runtime role,
//! connecting the runtime pool, and the readiness check. Called by the composition root
//! (`balance migrate`, `/ready`) and by the test harness; module code never sees the pool.

use std::{str::FromStr, time::Duration};

use sqlx::{
    Connection, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// Every migration of the platform, from the repository's `migrations/` folder.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The group role that migrations grant table privileges to. The runtime login role named
/// by `BALANCE_DATABASE_URL` is made a member of it by `balance migrate`, so migrations never
/// need to know the deployment's role names.
pub const RUNTIME_GROUP: &str = "balance_runtime";

/// A pooled connection idle for longer than this is tested (a ping) before it is used.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

/// A lazily connecting pool for the runtime role: the server starts (and `/ready` says
/// why it is not ready) even while the database is down, and reconnects by itself.
///
/// sqlx tests every connection as it comes back to the pool (a round trip off the request's
/// path); testing it again as it goes out would add a round trip to every transaction, so
/// only a connection idle for more than [`PING_AFTER_IDLE`] is tested before use.
pub fn runtime_pool(url: &str, max_connections: u32) -> Result<PgPool, MigrateError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| MigrateError::Config(format!("BALANCE_DATABASE_URL: {e}")))?
        .application_name("balance");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
}

/// Why the database is not ready to serve, if it is not.
pub async fn readiness(pool: &PgPool) -> Result<(), String> {
    let check = async {
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| format!("database unreachable: {e}"))?;
        let applied: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
                .fetch_all(&mut *conn)
                .await
                .map_err(|_| "database is not migrated: run `balance migrate`".to_string())?;
        if let Some((version, _)) = applied.iter().find(|(_, ok)| !ok) {
            return Err(format!("migration {version} failed; see `balance migrate`"));
        }
        let pending: Vec<i64> = MIGRATOR
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.iter().any(|(a, _)| a == v))
            .collect();
        if !pending.is_empty() {
            return Err(format!(
                "{} migration(s) pending: run `balance migrate`",
                pending.len()
            ));
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .unwrap_or_else(|_| Err("database did not answer within 5 s".into()))
}

/// Applies pending migrations as the owner, then creates the runtime role when missing and
/// grants it membership of [`RUNTIME_GROUP`] (DESIGN.md §1).
pub async fn migrate(owner_url: &str, runtime_url: &str) -> Result<(), MigrateError> {
    let runtime = PgConnectOptions::from_str(runtime_url)
        .map_err(|e| MigrateError::Config(format!("BALANCE_DATABASE_URL: {e}")))?;
    let runtime_user = runtime.get_username().to_string();
    let runtime_password = url::Url::parse(runtime_url)
        .ok()
        .and_then(|u| u.password().map(percent_decode))
        .unwrap_or_default();
    if runtime_user == RUNTIME_GROUP {
        return Err(MigrateError::Config(format!(
            "BALANCE_DATABASE_URL: the runtime user cannot be named `{RUNTIME_GROUP}` (reserved for the group role)"
        )));
    }

    let owner = PgConnectOptions::from_str(owner_url)
        .map_err(|e| MigrateError::Config(format!("BALANCE_DATABASE_OWNER_URL: {e}")))?;
    let mut conn = PgConnection::connect_with(&owner.application_name("balance-migrate"))
        .await
        .map_err(db(
            "connecting as the owner role (BALANCE_DATABASE_OWNER_URL)",
        ))?;
    if runtime_user == conn_user(&mut conn).await? {
        return Err(MigrateError::Config(
            "BALANCE_DATABASE_URL and BALANCE_DATABASE_OWNER_URL name the same role; the runtime role must own nothing"
                .into(),
        ));
    }

    MIGRATOR.run(&mut conn).await?;

    let existing: Option<(bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(&runtime_user)
            .fetch_optional(&mut conn)
            .await
            .map_err(db("reading the runtime role"))?;
    match existing {
        Some((true, _)) | Some((_, true)) => {
            return Err(MigrateError::Config(format!(
                "the runtime role `{runtime_user}` is a superuser or bypasses row-level security; refusing to grant it anything"
            )));
        }
        Some(_) => {}
        None => {
            let create: String = sqlx::query_scalar(
                "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT', $1::text, $2::text)",
            )
            .bind(&runtime_user)
            .bind(&runtime_password)
            .fetch_one(&mut conn)
            .await
            .map_err(db("creating the runtime role"))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                .execute(&mut conn)
                .await
                .map_err(db("creating the runtime role"))?;
            tracing::info!(role = %runtime_user, "created the runtime role");
        }
    }
    let grants: String = sqlx::query_scalar(
        "SELECT format('GRANT %I TO %I; GRANT CONNECT ON DATABASE %I TO %I; GRANT SELECT ON public._sqlx_migrations TO %I',
                       $1::text, $2::text, current_database(), $2::text, $1::text)",
    )
    .bind(RUNTIME_GROUP)
    .bind(&runtime_user)
    .fetch_one(&mut conn)
    .await
    .map_err(db("granting the runtime role"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(grants))
        .execute(&mut conn)
        .await
        .map_err(db("granting the runtime role"))?;
    conn.close().await.map_err(db("closing"))?;
    Ok(())
}

async fn conn_user(conn: &mut PgConnection) -> Result<String, MigrateError> {
    sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(conn)
        .await
        .map_err(db("reading the owner role"))
}

/// Why `balance migrate` failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The configuration cannot work (names the variable).
    #[error("{0}")]
    Config(String),
    /// A statement failed.
    #[error("{context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("applying migrations: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |source| MigrateError::Database { context, source }
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(decoded) if b == b'%' => {
                out.push(decoded);
                rest = &tail[2..];
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
