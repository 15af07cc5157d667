//! One database per test, cloned from a template that was migrated once.
//!
//! The template's name carries a digest of `migrations/` (and of whatever else the caller
//! says shapes the schema), so a changed migration builds a new template. Test processes
//! run in parallel (nextest runs each test in its own process): an advisory lock makes
//! exactly one of them build a missing template.
//!
//! The cluster comes from `ops/test`, which exports `BALANCE_TEST_PG_SUPERUSER_URL`,
//! `BALANCE_TEST_PG_OWNER_URL` and `BALANCE_TEST_PG_RUNTIME_URL`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection};
use url::Url;

/// A database of one test, dropped when the value is.
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// The owner role, connected to this database.
    pub owner_url: String,
    /// The runtime role, connected to this database.
    pub runtime_url: String,
    /// A superuser, connected to this database (for tests that play an attacker with
    /// full access, e.g. editing the audit log behind the application's back).
    pub superuser_url: String,
    /// How long the clone from the template took.
    pub clone_time: Duration,
    /// A second handle on a database another handle owns: dropping it drops nothing.
    shared: bool,
}

struct ClusterUrls {
    superuser: Url,
    owner: Url,
    runtime: Url,
}

fn cluster_urls() -> anyhow::Result<ClusterUrls> {
    let read = |name: &str| -> anyhow::Result<Url> {
        let raw = std::env::var(name).with_context(|| {
            format!(
                "{name} is not set: run the tests with `ops/test`, which starts the test cluster"
            )
        })?;
        Ok(Url::parse(&raw)?)
    };
    Ok(ClusterUrls {
        superuser: read("BALANCE_TEST_PG_SUPERUSER_URL")?,
        owner: read("BALANCE_TEST_PG_OWNER_URL")?,
        runtime: read("BALANCE_TEST_PG_RUNTIME_URL")?,
    })
}

fn with_db(url: &Url, db: &str) -> String {
    let mut url = url.clone();
    url.set_path(db);
    url.to_string()
}

/// URLs of a database for its owner and runtime roles (given to the migration callback).
pub struct MigrationTarget {
    pub owner_url: String,
    pub runtime_url: String,
}

impl TestDb {
    /// A fresh database with every migration applied by `migrate`.
    ///
    /// `schema_salt` names anything besides `migrations/` that `migrate` sets up (a job
    /// queue's own schema, say), so a change to it builds a new template.
    pub async fn migrated<F, Fut>(schema_salt: &str, migrate: F) -> anyhow::Result<TestDb>
    where
        F: FnOnce(MigrationTarget) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let urls = cluster_urls()?;
        let template = ensure_template(&urls, schema_salt, migrate).await?;
        Self::clone_from(&urls, Some(&template)).await
    }

    /// A fresh database with the platform's own migrations (`migrations/`, no job queue
    /// schema): what a module's service tests need.
    pub async fn with_migrations() -> anyhow::Result<TestDb> {
        Self::migrated("", |t| async move {
            Ok(kernel::migrate::migrate(&t.owner_url, &t.runtime_url).await?)
        })
        .await
    }

    /// The kernel's handle on this database, as the runtime role, with `hooks` installed
    /// (the audit log, the job outbox), in that order.
    pub async fn kernel_db(
        &self,
        hooks: impl IntoIterator<Item = std::sync::Arc<dyn kernel::CommitHook>>,
    ) -> anyhow::Result<kernel::Db> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(20)
            .connect(&self.runtime_url)
            .await?;
        Ok(hooks
            .into_iter()
            .fold(kernel::Db::new(pool), kernel::Db::with_hook))
    }

    /// A fresh database with no migrations applied.
    pub async fn empty() -> anyhow::Result<TestDb> {
        let urls = cluster_urls()?;
        Self::clone_from(&urls, None).await
    }

    async fn clone_from(urls: &ClusterUrls, template: Option<&str>) -> anyhow::Result<TestDb> {
        let name = format!("test_{}", uuid::Uuid::now_v7().simple());
        let owner = urls.owner.username().to_string();
        let mut admin = PgConnection::connect(&with_db(&urls.superuser, "postgres")).await?;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\" OWNER \"{owner}\""),
            None => format!("CREATE DATABASE \"{name}\" OWNER \"{owner}\""),
        };
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match admin.execute(sqlx::AssertSqlSafe(sql.clone())).await {
                Ok(_) => break,
                // Another process may still hold a connection to the template for a moment.
                Err(e)
                    if attempt < 50 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).context("creating the test database"),
            }
        }
        let clone_time = started.elapsed();
        admin.close().await?;
        Ok(TestDb {
            owner_url: with_db(&urls.owner, &name),
            runtime_url: with_db(&urls.runtime, &name),
            superuser_url: with_db(&urls.superuser, &name),
            name,
            clone_time,
            shared: false,
        })
    }

    /// Another handle on this database (e.g. for a second app instance); only the first
    /// handle drops the database.
    pub fn share(&self) -> TestDb {
        TestDb {
            name: self.name.clone(),
            owner_url: self.owner_url.clone(),
            runtime_url: self.runtime_url.clone(),
            superuser_url: self.superuser_url.clone(),
            clone_time: self.clone_time,
            shared: true,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.shared {
            return;
        }
        if std::env::var_os("BALANCE_TEST_KEEP_DB").is_some() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let Ok(urls) = cluster_urls() else { return };
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&with_db(&urls.superuser, "postgres"))
                    .await
                    .ok()?;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                admin.execute(sqlx::AssertSqlSafe(sql)).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

/// The digest of every file in `migrations/` plus the salt.
fn schema_digest(salt: &str) -> anyhow::Result<String> {
    let dir = crate::repo_root().join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    hash.update(salt.as_bytes());
    for file in files {
        hash.update(file.file_name().unwrap_or_default().as_encoded_bytes());
        hash.update(std::fs::read(&file)?);
    }
    Ok(kernel::hex::encode(&hash.finalize()[..8]))
}

async fn ensure_template<F, Fut>(
    urls: &ClusterUrls,
    salt: &str,
    migrate: F,
) -> anyhow::Result<String>
where
    F: FnOnce(MigrationTarget) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let template = format!("tpl_{}", schema_digest(salt)?);
    let mut admin = PgConnection::connect(&with_db(&urls.superuser, "postgres")).await?;
    if database_exists(&mut admin, &template).await? {
        admin.close().await?;
        return Ok(template);
    }
    admin.execute("SELECT pg_advisory_lock(7710001)").await?;
    let result = async {
        if database_exists(&mut admin, &template).await? {
            return Ok(());
        }
        let building = format!("{template}_building");
        let owner = urls.owner.username();
        admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"))).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{building}\" OWNER \"{owner}\"")))
            .await?;
        let target = MigrationTarget {
            owner_url: with_db(&urls.owner, &building),
            runtime_url: with_db(&urls.runtime, &building),
        };
        if let Err(e) = migrate(target).await {
            admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"))).await?;
            bail!("migrating the template database: {e:#}");
        }
        // Close stragglers (a pool's idle connection) so the template can be renamed and cloned.
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}' AND pid <> pg_backend_pid()"
            )))
            .await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\"")))
            .await?;
        anyhow::Ok(())
    }
    .await;
    admin.execute("SELECT pg_advisory_unlock(7710001)").await?;
    admin.close().await?;
    result.map(|()| template)
}

async fn database_exists(admin: &mut PgConnection, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
}
