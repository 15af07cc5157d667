//! Brute-force limits (DESIGN.md §4): per-IP windows in-process, per-account failure
//! counters in the database (right across instances). Over a limit: `429` with
//! `Retry-After` and the `RateLimit-*` headers.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use kernel::{Actor, Db, Problem, SystemTx};
use poem::http::{HeaderName, HeaderValue, StatusCode};

/// `max` events per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub per: Duration,
}

/// The limits of API.md (defaults there; configured in `BALANCE_RATE_LIMITS`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub login_ip: Limit,
    pub login_account: Limit,
    pub signup_ip: Limit,
    pub reset_account: Limit,
    pub verify_ip: Limit,
    pub totp_account: Limit,
    /// Requests per API key.
    pub api_key: Limit,
    /// Requests per signed-in user (all their sessions together).
    pub user: Limit,
    /// Invitations sent per tenant, and per inviter in a tenant (mail to outside
    /// addresses: the platform's sending reputation).
    pub invite_tenant: Limit,
    pub invite_user: Limit,
    /// Password-reset requests, and reset confirmations, per client address.
    pub reset_ip: Limit,
    pub reset_confirm_ip: Limit,
}

impl Limits {
    /// Every limit the same (tests that do not test limits open them all).
    pub fn all(limit: Limit) -> Limits {
        Limits {
            login_ip: limit,
            login_account: limit,
            signup_ip: limit,
            reset_account: limit,
            verify_ip: limit,
            totp_account: limit,
            api_key: limit,
            user: limit,
            invite_tenant: limit,
            invite_user: limit,
            reset_ip: limit,
            reset_confirm_ip: limit,
        }
    }
}

/// A `429` for `limit`, to retry after `retry_after`.
pub fn too_many(limit: Limit, retry_after: Duration) -> Problem {
    let secs = retry_after.as_secs().max(1);
    let header = |v: String| HeaderValue::from_str(&v).expect("digits");
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
    )
    .with_detail(format!("Too many attempts; try again in {secs} seconds."))
    .with_header(
        HeaderName::from_static("retry-after"),
        header(secs.to_string()),
    )
    .with_header(
        HeaderName::from_static("ratelimit-limit"),
        header(limit.max.to_string()),
    )
    .with_header(
        HeaderName::from_static("ratelimit-remaining"),
        HeaderValue::from_static("0"),
    )
    .with_header(
        HeaderName::from_static("ratelimit-reset"),
        header(secs.to_string()),
    )
}

/// When a window started, and how many requests it counted.
type Window = (Instant, u32);

/// Fixed windows per key, in this process.
pub struct Windows<K> {
    windows: Mutex<HashMap<K, Window>>,
}

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Windows {
            windows: Mutex::new(HashMap::new()),
        }
    }
}

/// A request over a limit: its `429`, and whether it is the first refused in its window
/// (when a throttle starts, which is what the audit log records).
pub struct Refused {
    pub problem: Problem,
    pub first: bool,
}

impl<K: Hash + Eq> Windows<K> {
    /// Counts one request against `key`; refused past the limit.
    pub fn hit(&self, key: K, limit: Limit) -> Result<(), Refused> {
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("limiter lock");
        if windows.len() > 100_000 {
            windows
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(86_400));
        }
        let entry = windows.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= limit.per {
            *entry = (now, 0);
        }
        if entry.1 >= limit.max {
            let first = entry.1 == limit.max;
            entry.1 = entry.1.saturating_add(1);
            return Err(Refused {
                problem: too_many(limit, limit.per.saturating_sub(now.duration_since(entry.0))),
                first,
            });
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Fixed windows per (limit, client address), in this process. IPv6 addresses count by
/// their /64, which one host usually holds whole.
#[derive(Default)]
pub struct IpWindows(Windows<(&'static str, IpAddr)>);

impl IpWindows {
    /// Counts one request from `ip` against `name`; refused past the limit.
    pub fn hit(&self, name: &'static str, limit: Limit, ip: Option<IpAddr>) -> Result<(), Refused> {
        match ip {
            Some(ip) => self.0.hit((name, kernel::client_key(ip)), limit),
            None => Ok(()),
        }
    }
}

/// An account counter: how many events its window holds, and when the window ends.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    pub count: u32,
    pub seconds_left: f64,
}

impl Count {
    /// The `429` of a counter at `limit`.
    pub fn refusal(&self, limit: Limit) -> Problem {
        too_many(limit, Duration::from_secs_f64(self.seconds_left.max(1.0)))
    }
}

/// The account counter `key` now, if its window is open. Committed on its own.
pub async fn account_count(db: &Db, key: &str, limit: Limit) -> Result<Option<Count>, Problem> {
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    let row = crate::store::throttle(tx.conn(), key, limit.per.as_secs_f64()).await?;
    tx.commit().await?;
    Ok(row.map(|t| Count {
        count: t.count.max(0) as u32,
        seconds_left: t.seconds_left,
    }))
}

/// Whether the account counter `key` is at its limit: `Err(429)` then.
pub async fn check_account(db: &Db, key: &str, limit: Limit) -> Result<(), Problem> {
    match account_count(db, key, limit).await? {
        Some(c) if c.count >= limit.max => Err(c.refusal(limit)),
        _ => Ok(()),
    }
}

/// Counts one event against the account counter `key` (a new window when the old one
/// ended), committed on its own; the counter after it.
pub async fn count_account(db: &Db, key: &str, limit: Limit) -> Result<Count, Problem> {
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    let t = crate::store::count_throttle(tx.conn(), key, limit.per.as_secs_f64()).await?;
    tx.commit().await?;
    Ok(Count {
        count: t.count.max(0) as u32,
        seconds_left: t.seconds_left,
    })
}

/// Forgets the account counter `key` (a successful login).
pub async fn reset_account(db: &Db, key: &str) -> Result<(), Problem> {
    let mut tx = SystemTx::begin(db, Actor::System).await?;
    crate::store::reset_throttle(tx.conn(), key).await?;
    tx.commit().await
}
