//! Test-only building blocks (a dev-dependency, never linked into the product):
//!
//! - [`db`]: a database per test, cloned from a migrated template in milliseconds;
//! - [`cluster`]: a throwaway PostgreSQL cluster of its own, for tests that stop the server;
//! - [`smtp`]: an SMTP sink that speaks real SMTP and keeps what it receives;
//! - [`otlp`]: an OTLP/HTTP receiver that keeps the trace exports it receives;
//! - [`llm`]: an OpenAI-compatible chat-completions server that answers by keyword, or
//!   fails as asked (429, 500, a refusal, not JSON, slow), and keeps every request;
//! - [`plaid`]: a Plaid stand-in (Link and exchange, accounts, a paged `/transactions/sync`
//!   over a change log, Plaid's error bodies as faults, ES256-signed webhooks);
//! - [`stripe`]: a Stripe stand-in (customers, Checkout and portal sessions, subscriptions
//!   to retrieve, Stripe's idempotency and error envelope, faults, `Stripe-Signature`s);
//! - [`ecb`]: the ECB's daily reference-rate file, or its failures;
//! - [`seed`]: tenants, users and memberships arranged through the kernel's handles;
//! - [`openapi`]: a validator that holds real responses to a committed OpenAPI 3.0 spec.
//!
//! A stand-in for Telegram joins these as its feature lands.

pub mod cluster;
pub mod db;
pub mod ecb;
pub mod llm;
pub mod logs;
pub mod openapi;
pub mod otlp;
pub mod plaid;
pub mod seed;
pub mod smtp;
pub mod stripe;

use std::{path::PathBuf, time::Duration};

/// The repository root: found from the crate under test (cargo sets `CARGO_MANIFEST_DIR`
/// when it runs tests) by walking up to the folder that holds `migrations/` and `ops/pg`.
/// The path baked in at compile time is only a fallback: a build cache shared between
/// clones may hold a testkit compiled in another clone.
pub fn repo_root() -> PathBuf {
    let is_root =
        |dir: &std::path::Path| dir.join("migrations").is_dir() && dir.join("ops/pg").is_file();
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    start
        .ancestors()
        .find(|d| is_root(d))
        .map(PathBuf::from)
        .or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .canonicalize()
                .ok()
        })
        .expect("the repository root (a folder with migrations/ and ops/pg)")
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

/// A child process that is killed when the test ends, even when it fails half-way, so a
/// failing test never leaves a server or worker behind.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    pub fn new(child: std::process::Child) -> ChildGuard {
        ChildGuard(child)
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
