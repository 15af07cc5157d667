//! `balance`: the one binary of the platform.

use std::{collections::BTreeMap, io::Write, path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};
use balance::{Config, Platform, config::ConfigError, dev::LocalCluster, http, telemetry};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use kernel::{Actor, RequestContext, TenantId, TenantTx, migrate as db};

/// Balance: multi-tenant money operations.
#[derive(Parser)]
#[command(name = "balance", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API on BALANCE_LISTEN.
    Serve,
    /// Run background jobs (every queue, and the cron schedules).
    Worker,
    /// Apply database migrations as the owner role and grant the runtime role.
    Migrate,
    /// Print the OpenAPI spec to stdout.
    Openapi,
    /// Run the whole platform locally: private PostgreSQL, migrations, API and worker.
    Dev,
    /// Verify and export the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Inspect and operate the job runner.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Operator actions that need the owner role.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Encryption key rotation (runbooks/key-rotation.md).
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-seals every ciphertext (TOTP secrets, bank tokens, sealed API-key replays) under
    /// the first key of BALANCE_ENCRYPTION_KEYS, as a resumable job run by the workers;
    /// waits for it and prints its progress.
    Reencrypt {
        /// Queue the job and return at once.
        #[arg(long, conflicts_with = "inline")]
        no_wait: bool,
        /// Run it in this process instead of queueing it for a worker.
        #[arg(long)]
        inline: bool,
    },
    /// Exits 0 only when no ciphertext still uses the key, so it can leave the ring.
    CheckRetire { key_id: String },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Removes a deleted tenant's rows, its audit chain included, after the grace period.
    PurgeTenant {
        tenant: TenantId,
        /// Purge before the 30-day grace period ends.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Jobs newest first, one JSON object per line.
    List {
        /// queued, running, succeeded, failed or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        tenant: Option<TenantId>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One job, with its payload and last error.
    Show { id: uuid::Uuid },
    /// Re-runs a dead job from its first attempt.
    Retry { id: uuid::Uuid },
    /// Deletes finished jobs older than an age (`30d`, `12h`, `15m`).
    Purge {
        #[arg(long, value_parser = parse_age)]
        older_than: std::time::Duration,
        /// Which finished jobs: succeeded (default) or dead.
        #[arg(long)]
        status: Option<String>,
    },
}

/// `30d`, `12h`, `15m`, `45s`.
fn parse_age(raw: &str) -> Result<std::time::Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (n, unit) = raw.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{raw}` is not an age such as 30d, 12h or 15m"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{raw}`: the unit is s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(n * secs))
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check a chain and its signed checkpoints; exit code 0 only when both hold.
    Verify {
        /// The tenant whose chain to check (with the configured keys).
        #[arg(long, conflicts_with_all = ["file", "platform"])]
        tenant: Option<TenantId>,
        /// Check the platform chain.
        #[arg(long, conflicts_with = "file")]
        platform: bool,
        /// Check an export offline instead (needs --keys).
        #[arg(long, requires = "keys")]
        file: Option<PathBuf>,
        /// The public keys (the JSON of GET /api/v1/audit/public-key).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Write a tenant's chain as NDJSON to stdout.
    Export {
        #[arg(long)]
        tenant: TenantId,
    },
}

/// Exit code for configuration errors.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        print!("{}", http::spec());
        return ExitCode::SUCCESS;
    }
    if let Command::Audit(AuditCommand::Verify {
        file: Some(file),
        keys: Some(keys),
        ..
    }) = &cli.command
    {
        return verify_file(file, keys);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        match run(cli.command).await {
            Ok(code) => code,
            Err(e) => match e.downcast_ref::<ConfigError>() {
                Some(config) => {
                    eprintln!("balance: invalid configuration: {config}");
                    ExitCode::from(EXIT_CONFIG)
                }
                None => {
                    eprintln!("balance: {e:#}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    if let Command::Dev = command {
        dev().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::from_env()?;
    let _telemetry = telemetry::init(&config.log)?;
    match command {
        Command::Serve => serve(&config).await?,
        Command::Worker => worker(&config).await?,
        Command::Migrate => migrate(&config).await?,
        Command::Audit(audit) => return audit_command(&config, audit).await,
        Command::Jobs(command) => return jobs_command(&config, command).await,
        Command::Keys(command) => return keys_command(&config, command).await,
        Command::Admin(AdminCommand::PurgeTenant { tenant, force }) => {
            let owner = require(
                &config.database.owner_url,
                "BALANCE_DATABASE_OWNER_URL",
                DB_HINT,
            )?;
            let removed = tenancy::purge(owner, tenant, force)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("purged tenant {tenant}: {removed} rows");
        }
        Command::Openapi | Command::Dev => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn require<'a>(
    value: &'a Option<kernel::Secret<String>>,
    var: &'static str,
    hint: &str,
) -> Result<&'a str, ConfigError> {
    value
        .as_ref()
        .map(|s| s.expose().as_str())
        .ok_or_else(|| ConfigError {
            var,
            message: format!("required: {hint}"),
        })
}

const DB_HINT: &str =
    "start a local cluster with `ops/pg up` and `eval \"$(ops/pg env)\"`, or use `balance dev`";

async fn platform(config: &Config) -> anyhow::Result<Platform> {
    let url = require(&config.database.url, "BALANCE_DATABASE_URL", DB_HINT)?;
    Platform::new(config, db::runtime_pool(url, config.database.pool_size)?)
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let owner = require(
        &config.database.owner_url,
        "BALANCE_DATABASE_OWNER_URL",
        DB_HINT,
    )?;
    let runtime = require(&config.database.url, "BALANCE_DATABASE_URL", DB_HINT)?;
    balance::platform::migrate(owner, runtime).await?;
    let rates = balance::platform::seed(owner).await?;
    tracing::info!(
        migrations = db::MIGRATOR.iter().count(),
        rates,
        "database is migrated"
    );
    Ok(())
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let platform = platform(config).await?;
    let shutdown = shutdown_signal();
    let server = http::Server::start_product(&config.http, &platform).await?;
    tracing::info!(addr = %server.addr, admin = ?server.admin_addr, "serving the API");
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.stop().await;
    Ok(())
}

async fn worker(config: &Config) -> anyhow::Result<()> {
    let platform = platform(config).await?;
    let shutdown = shutdown_signal();
    let runner = platform.runner(jobs::RunnerConfig::default());
    // Run-duration histograms on the admin listener, when there is one.
    let admin = match config.http.admin_listen {
        Some(addr) => Some(http::serve_worker_metrics(addr, runner.metrics()).await?),
        None => None,
    };
    runner.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))?;
    if let Some(admin) = admin {
        admin.stop().await;
    }
    Ok(())
}

/// Everything in one process on embedded defaults.
async fn dev() -> anyhow::Result<()> {
    let mut overrides = BTreeMap::new();
    let cluster = if std::env::var_os("BALANCE_DATABASE_URL").is_some() {
        None
    } else {
        let (cluster, vars) = LocalCluster::up()?;
        overrides = vars;
        Some(cluster)
    };
    overrides
        .entry("BALANCE_LOG_FORMAT".into())
        .or_insert_with(|| "pretty".into());
    let config = Config::load(&|name| {
        std::env::var(name)
            .ok()
            .or_else(|| overrides.get(name).cloned())
    })?;
    let _telemetry = telemetry::init(&config.log)?;
    migrate(&config).await.context("migrating the database")?;
    let platform = platform(&config).await?;
    let shutdown = shutdown_signal();
    let server = http::Server::start_product(&config.http, &platform).await?;
    let base = format!("http://{}", server.addr);
    println!(
        "\nBalance is running.\n  API docs: {base}/docs\n  Health:   {base}/ready\nPress Ctrl-C to stop.\n"
    );
    platform
        .runner(jobs::RunnerConfig::default())
        .run(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("Stopping Balance...");
    server.stop().await;
    drop(cluster);
    Ok(())
}

async fn audit_command(config: &Config, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let platform = platform(config).await?;
    let keys = platform.audit.keys().public_keys();
    let ctx = std::sync::Arc::new(RequestContext::background(
        "cli",
        uuid::Uuid::now_v7().to_string(),
    ));
    ctx.scope(async move {
        match command {
            AuditCommand::Verify {
                tenant: Some(tenant),
                ..
            } => {
                let mut tx = TenantTx::begin(&platform.db, tenant, Actor::System).await?;
                let result = audit::verify(&mut tx, keys).await?;
                Ok(report(&result))
            }
            AuditCommand::Verify { platform: true, .. } => {
                let mut tx = kernel::SystemTx::begin(&platform.db, Actor::System).await?;
                let result = audit::verify_platform(&mut tx, keys).await?;
                Ok(report(&result))
            }
            AuditCommand::Verify { .. } => {
                bail!("name a chain: --tenant <id>, --platform, or --file <export> --keys <keys>")
            }
            AuditCommand::Export { tenant } => {
                let tx = TenantTx::begin(&platform.db, tenant, Actor::System).await?;
                let mut stream = std::pin::pin!(audit::export(tx));
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                while let Some(chunk) = stream.next().await {
                    out.write_all(chunk?.as_bytes())?;
                }
                out.flush()?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
    .await
}

async fn jobs_command(config: &Config, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let platform = platform(config).await?;
    let db = &platform.db;
    let print =
        |job: &jobs::JobView| println!("{}", serde_json::to_string(job).expect("a job serialises"));
    match command {
        JobsCommand::List {
            status,
            tenant,
            limit,
        } => {
            for job in jobs::list_all(db, &jobs::JobFilter { status, tenant }, limit).await? {
                print(&job);
            }
        }
        JobsCommand::Show { id } => match jobs::show(db, id).await? {
            Some(job) => print(&job),
            None => bail!("no job {id}"),
        },
        JobsCommand::Retry { id } => {
            if !jobs::retry(db, id).await? {
                bail!("job {id} is not dead (or does not exist): only dead jobs are retried");
            }
            eprintln!("job {id} queued again");
        }
        JobsCommand::Purge { older_than, status } => {
            let purged = jobs::purge_finished(db, older_than, status.as_deref()).await?;
            eprintln!("purged {purged} jobs");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn keys_command(config: &Config, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let platform = platform(config).await?;
    let ctx = std::sync::Arc::new(RequestContext::background(
        "cli",
        uuid::Uuid::now_v7().to_string(),
    ));
    ctx.scope(async move {
        match command {
            KeysCommand::Reencrypt { inline: true, .. } => {
                let summary = platform.reencrypt(None).await?;
                println!("{}", serde_json::to_string(&summary)?);
                Ok(ExitCode::SUCCESS)
            }
            KeysCommand::Reencrypt { no_wait, .. } => {
                let mut tx = kernel::SystemTx::begin(&platform.db, Actor::System).await?;
                let id = jobs::Enqueue::enqueue(
                    &mut tx,
                    jobs::NewJob::new(
                        "system",
                        balance::platform::VAULT_REENCRYPT,
                        serde_json::json!({}),
                    ),
                );
                tx.commit().await?;
                eprintln!("re-encryption queued as job {id}");
                if no_wait {
                    println!("{id}");
                    return Ok(ExitCode::SUCCESS);
                }
                let mut shown = -1.0f32;
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let Some(job) = jobs::show(&platform.db, id).await? else {
                        bail!("job {id} disappeared");
                    };
                    if job.progress != shown {
                        shown = job.progress;
                        eprintln!("{:>3.0} % ({})", job.progress * 100.0, job.status);
                    }
                    match job.status.as_str() {
                        "succeeded" => return Ok(ExitCode::SUCCESS),
                        "dead" => bail!(
                            "re-encryption failed: {}",
                            job.last_error.unwrap_or_default()
                        ),
                        _ => {}
                    }
                }
            }
            KeysCommand::CheckRetire { key_id } => {
                let vault = platform.identity.vault();
                if !vault.has_key(&key_id) {
                    eprintln!(
                        "no key {key_id} in BALANCE_ENCRYPTION_KEYS: name a key of the ring (a removed key cannot be checked)"
                    );
                    return Ok(ExitCode::FAILURE);
                }
                if vault.first_key_id() == key_id {
                    eprintln!(
                        "key {key_id} is the one that encrypts: promote another key first, re-encrypt, then check again"
                    );
                    return Ok(ExitCode::FAILURE);
                }
                let counts =
                    vault::rotation::check_retire(&platform.db, &platform.ciphertexts(), &key_id)
                        .await?;
                let total: i64 = counts.iter().map(|(_, n)| n).sum();
                let by_kind: serde_json::Map<String, serde_json::Value> = counts
                    .into_iter()
                    .map(|(kind, n)| (kind, serde_json::Value::from(n)))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "key_id": key_id, "in_use": total, "kinds": by_kind })
                );
                if total == 0 {
                    eprintln!("key {key_id} seals nothing: it can leave BALANCE_ENCRYPTION_KEYS");
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("key {key_id} still seals {total} ciphertexts: run `balance keys reencrypt`");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    })
    .await
}

/// Prints a verification as one JSON line; exit code 0 only when it holds.
fn report(result: &audit::Verification) -> ExitCode {
    println!(
        "{}",
        serde_json::to_string(result).expect("a verification serialises")
    );
    match result.first_bad_seq {
        None if result.ok => ExitCode::SUCCESS,
        bad => {
            eprintln!(
                "audit chain broken at seq {}: {}",
                bad.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                result.reason.as_deref().unwrap_or("unknown")
            );
            ExitCode::FAILURE
        }
    }
}

/// `balance audit verify --file … --keys …`: offline, no configuration, no database.
fn verify_file(file: &PathBuf, keys: &PathBuf) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        let keys: serde_json::Value =
            serde_json::from_slice(&std::fs::read(keys).context("reading --keys")?)?;
        let keys: Vec<audit::PublicKey> =
            serde_json::from_value(keys.get("keys").cloned().unwrap_or(keys))
                .context("--keys must be the JSON of GET /api/v1/audit/public-key")?;
        let reader = std::io::BufReader::new(std::fs::File::open(file).context("reading --file")?);
        let result = audit::verify_export(reader, keys).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(report(&result))
    };
    run().unwrap_or_else(|e| {
        eprintln!("balance: {e:#}");
        ExitCode::FAILURE
    })
}

/// Resolves on Ctrl-C or SIGTERM. The SIGTERM handler is installed when this is called,
/// not when it is first polled: call it before the server starts listening, so a signal
/// that arrives as soon as the port answers is not the default (an abrupt exit).
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    }
}
