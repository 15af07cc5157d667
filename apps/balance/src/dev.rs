//! `balance dev`: the whole platform on one machine with no set-up. It starts the
//! project's private PostgreSQL cluster (`ops/pg`) unless `BALANCE_DATABASE_URL` is set,
//! and stops it again on the way out.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// The `ops/pg` script: beside the current folder when run from the repository, else
/// where this binary was built from.
pub fn pg_script() -> PathBuf {
    let here = Path::new("ops/pg");
    if here.is_file() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/pg")
}

/// A cluster this process started, stopped on drop.
pub struct LocalCluster {
    script: PathBuf,
}

impl LocalCluster {
    /// Starts the `dev` cluster and returns the variables that point Balance at it.
    pub fn up() -> anyhow::Result<(LocalCluster, BTreeMap<String, String>)> {
        let script = pg_script();
        let status = Command::new(&script)
            .arg("up")
            .env("BALANCE_PG_CLUSTER", "dev")
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        if !status.success() {
            bail!("{} up failed ({status})", script.display());
        }
        let cluster = LocalCluster {
            script: script.clone(),
        };
        let out = Command::new(&script)
            .arg("env")
            .env("BALANCE_PG_CLUSTER", "dev")
            .output()?;
        if !out.status.success() {
            bail!(
                "{} env failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((
            cluster,
            parse_exports(&String::from_utf8_lossy(&out.stdout)),
        ))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("down")
            .env("BALANCE_PG_CLUSTER", "dev")
            .status();
    }
}

/// Reads `export NAME='value'` lines.
pub fn parse_exports(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches('\'').trim_matches('"').to_string(),
            )
        })
        .collect()
}
