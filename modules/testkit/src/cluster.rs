//! A PostgreSQL cluster of a test's own, started with the project's `ops/pg` script, for
//! tests that stop and start the server. Destroyed when dropped.

use std::process::Command;

use anyhow::{Context, bail};

/// A throwaway cluster.
pub struct Cluster {
    name: String,
    /// The owner role's URL (database `balance`).
    pub owner_url: String,
    /// The runtime role's URL (database `balance`).
    pub runtime_url: String,
}

impl Cluster {
    /// Initialises and starts a new cluster named `<prefix>-<pid>`.
    pub fn start(prefix: &str) -> anyhow::Result<Cluster> {
        let name = format!("t-{prefix}-{}", std::process::id());
        run(&name, "up")?;
        let out = pg(&name, "env").output()?;
        if !out.status.success() {
            bail!("ops/pg env: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8(out.stdout)?;
        let var = |key: &str| -> anyhow::Result<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {key}=")))
                .map(|v| v.trim_matches('\'').to_string())
                .with_context(|| format!("ops/pg env printed no {key}"))
        };
        Ok(Cluster {
            owner_url: var("BALANCE_DATABASE_OWNER_URL")?,
            runtime_url: var("BALANCE_DATABASE_URL")?,
            name,
        })
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) -> anyhow::Result<()> {
        run(&self.name, "down")
    }

    /// Starts it again on the same port.
    pub fn resume(&self) -> anyhow::Result<()> {
        run(&self.name, "up")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run(&self.name, "destroy");
    }
}

fn pg(name: &str, command: &str) -> Command {
    let mut cmd = Command::new(crate::repo_root().join("ops/pg"));
    cmd.arg(command)
        .env("BALANCE_PG_CLUSTER", name)
        .env("BALANCE_PG_FAST", "1");
    cmd
}

fn run(name: &str, command: &str) -> anyhow::Result<()> {
    let out = pg(name, command)
        .output()
        .with_context(|| format!("running ops/pg {command}"))?;
    if !out.status.success() {
        bail!(
            "ops/pg {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
