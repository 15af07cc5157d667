//! Test-only building blocks (a dev-dependency, never linked into the product):
//!
//! - [`db`]: a database per test, cloned from a migrated template in milliseconds;
//! - [`cluster`]: a throwaway PostgreSQL cluster of its own, for tests that stop the server;
//! - [`smtp`]: an SMTP sink that speaks real SMTP and keeps what it receives;
//! - [`otlp`]: an OTLP/HTTP receiver that keeps the trace exports it receives.
//!
//! Stand-ins for Stripe, Plaid, Telegram and an LLM join these as their features land.

pub mod cluster;
pub mod db;
pub mod otlp;
pub mod smtp;

use std::{path::PathBuf, time::Duration};

/// The repository root (testkit lives in `modules/testkit`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Polls `check` every 50 ms until it returns `Some`, or `None` after `deadline`.
/// Tests wait with a generous deadline instead of asserting a duration.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
