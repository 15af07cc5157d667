//! `balance`: the one binary of the platform.

use std::{collections::BTreeMap, process::ExitCode};

use anyhow::Context;
use balance::{Config, config::ConfigError, dev::LocalCluster, http, telemetry};
use clap::{Parser, Subcommand};
use kernel::migrate as db;

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
    /// Run background jobs (idles until the job runner lands).
    Worker,
    /// Apply database migrations as the owner role and grant the runtime role.
    Migrate,
    /// Print the OpenAPI spec to stdout.
    Openapi,
    /// Run the whole platform locally: private PostgreSQL, migrations, API and worker.
    Dev,
}

/// Exit code for configuration errors.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        print!("{}", http::spec());
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        match run(cli.command).await {
            Ok(()) => ExitCode::SUCCESS,
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

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev => dev().await,
        command => {
            let config = Config::from_env()?;
            let _telemetry = telemetry::init(&config.log)?;
            match command {
                Command::Serve => serve(&config).await,
                Command::Worker => worker().await,
                Command::Migrate => migrate(&config).await,
                Command::Openapi | Command::Dev => unreachable!("handled above"),
            }
        }
    }
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

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let owner = require(
        &config.database.owner_url,
        "BALANCE_DATABASE_OWNER_URL",
        DB_HINT,
    )?;
    let runtime = require(&config.database.url, "BALANCE_DATABASE_URL", DB_HINT)?;
    db::migrate(owner, runtime).await?;
    tracing::info!(
        migrations = db::MIGRATOR.iter().count(),
        "database is migrated"
    );
    Ok(())
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let url = require(&config.database.url, "BALANCE_DATABASE_URL", DB_HINT)?;
    let pool = db::runtime_pool(url, 20)?;
    let server = http::Server::start_product(&config.http, pool).await?;
    tracing::info!(addr = %server.addr, admin = ?server.admin_addr, "serving the API");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.stop().await;
    Ok(())
}

async fn worker() -> anyhow::Result<()> {
    tracing::info!("worker started; no queues yet (the job runner lands with issue 11)");
    shutdown_signal().await;
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
    let url = require(&config.database.url, "BALANCE_DATABASE_URL", DB_HINT)?;
    let server = http::Server::start_product(&config.http, db::runtime_pool(url, 20)?).await?;
    let base = format!("http://{}", server.addr);
    println!(
        "\nBalance is running.\n  API docs: {base}/docs\n  Health:   {base}/ready\nPress Ctrl-C to stop.\n"
    );
    shutdown_signal().await;
    println!("Stopping Balance...");
    server.stop().await;
    drop(cluster);
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
