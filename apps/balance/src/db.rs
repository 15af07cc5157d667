//! The database as the composition root sees it: connecting, migrating as the owner,
//! creating and granting the runtime role, and the readiness check.

use std::{str::FromStr, time::Duration};

use anyhow::{Context, bail};
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

/// A lazily connecting pool for the runtime role: the server starts (and `/ready` says
/// why it is not ready) even while the database is down, and reconnects by itself.
pub fn runtime_pool(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("BALANCE_DATABASE_URL")?
        .application_name("balance");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(true)
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
pub async fn migrate(owner_url: &str, runtime_url: &str) -> anyhow::Result<()> {
    let runtime = PgConnectOptions::from_str(runtime_url).context("BALANCE_DATABASE_URL")?;
    let runtime_user = runtime.get_username().to_string();
    let runtime_password = url::Url::parse(runtime_url)
        .ok()
        .and_then(|u| u.password().map(percent_decode))
        .unwrap_or_default();
    if runtime_user == RUNTIME_GROUP {
        bail!(
            "BALANCE_DATABASE_URL: the runtime user cannot be named `{RUNTIME_GROUP}` (reserved for the group role)"
        );
    }

    let owner = PgConnectOptions::from_str(owner_url).context("BALANCE_DATABASE_OWNER_URL")?;
    let mut conn = PgConnection::connect_with(&owner.application_name("balance-migrate"))
        .await
        .context("connecting as the owner role (BALANCE_DATABASE_OWNER_URL)")?;
    if runtime_user == conn_user(&mut conn).await? {
        bail!(
            "BALANCE_DATABASE_URL and BALANCE_DATABASE_OWNER_URL name the same role; the runtime role must own nothing"
        );
    }

    MIGRATOR
        .run(&mut conn)
        .await
        .context("applying migrations")?;

    let existing: Option<(bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(&runtime_user)
            .fetch_optional(&mut conn)
            .await?;
    match existing {
        Some((true, _)) | Some((_, true)) => {
            bail!(
                "the runtime role `{runtime_user}` is a superuser or bypasses row-level security; refusing to grant it anything"
            )
        }
        Some(_) => {}
        None => {
            let create: String = sqlx::query_scalar(
                "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT', $1::text, $2::text)",
            )
            .bind(&runtime_user)
            .bind(&runtime_password)
            .fetch_one(&mut conn)
            .await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                .execute(&mut conn)
                .await
                .context("creating the runtime role")?;
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
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(grants))
        .execute(&mut conn)
        .await
        .context("granting the runtime role")?;
    conn.close().await?;
    Ok(())
}

async fn conn_user(conn: &mut PgConnection) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(conn)
        .await?)
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
