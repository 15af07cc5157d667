//! The built-in sandbox bank: a [`Provider`] named `sandbox`, in-process (no HTTP, no outside
//! service), on by default so that a local run has a bank to connect.
//!
//! # Items and seeds
//!
//! Everything an item holds is a pure function of a 64-bit **seed**:
//!
//! - [`Provider::exchange`] of a public token `sandbox-public-<16 hex digits>`
//!   ([`PUBLIC_TOKEN_PREFIX`]) picks that seed, so tests choose their data; any other
//!   non-empty public token gives the first 8 bytes (big-endian) of its SHA-256; an empty one
//!   is refused. The access token is `sandbox-access-<16 hex seed>`, the item id
//!   `sandbox-item-<16 hex seed>`, the institution `Balance Sandbox Bank`. Every other call
//!   reads the seed back from the access token; a token not of that form is
//!   `Ended { code: "INVALID_ACCESS_TOKEN" }`.
//! - **A broken login, for testing repair**: a seed whose first four hex digits are `dead`
//!   (`sandbox-public-dead…`) exchanges normally, but its `accounts` and `sync` always answer
//!   `NeedsReauth { code: "ITEM_LOGIN_REQUIRED" }`. An update-mode link token for it is
//!   issued as for any other item; `disconnect` succeeds.
//! - Link tokens are `link-sandbox-<32 random hex>`, valid 4 hours. The sandbox sends no
//!   webhooks, so [`Provider::verify_webhook`] refuses every one.
//!
//! # Accounts
//!
//! Two per item, both in EUR: `Business Checking` (`depository`/`checking`, id
//! `sandbox-acc-<seed>-checking`) and `Business Card` (`credit`/`credit card`, id
//! `sandbox-acc-<seed>-card`), each with a 4-digit mask derived from the seed. The checking
//! account opens with 25,000.00, the card with 0. `current_balance` is the opening balance
//! plus every posted transaction of the account in the item's history (below) as of today;
//! `available_balance` adds the pending ones for the checking account and is the current
//! balance for the card.
//!
//! # Transactions
//!
//! A deterministic generator (`day(seed, account, date)`, a splitmix64 stream seeded from the
//! seed, the account and the date) writes each day's rows: on the checking account rent on
//! the 1st, insurance on the 5th, telecom on the 6th, the accountant on the 10th (and VAT
//! each quarter), the card's settlement on the 20th, payroll (one `SALARY` row per employee)
//! on the 25th, bank fees on the last business day (each moved to a business day), a weekly
//! Stripe payout, customers' invoice payments and the odd debit-card purchase; on the card
//! SaaS subscriptions on fixed days (AWS, Google Workspace, Slack, GitHub, Atlassian), 0–4
//! purchases each weekday (travel, restaurants, coffee, office supplies, Amazon Business…)
//! and the settlement coming in. Amounts are minor units, negative for money out, never 0.
//!
//! Each generated row has a life, as a function of its date `d` (its age is `today − d`):
//!
//! - card purchases (debit or credit) are **pending** while their age is 0 or 1, with id
//!   `<id>-p`; from age 2 the pending id is gone and the **posted** row `<id>` is there with
//!   `pending_transaction_id: <id>-p`, dated `d` or `d + 1`, and for restaurants and hotels
//!   sometimes 10–20 % more (a tip, incidentals). Other rows are posted on their day.
//! - ~3 % of posted rows are **modified** two days after posting: they first carry the
//!   bank's raw text (a `REF…` suffix, no merchant) and are then cleaned up (the merchant
//!   filled in). ~1 % are **removed** three days after posting (a reversal). A row never
//!   changes again after age 5.
//!
//! The history of an item starts 90 days before its first sync's today (remembered in the
//! cursor, and in this process for [`Provider::accounts`]; `accounts` before any sync, or
//! after a restart before the next sync, assumes a first sync today). The state of the item
//! "as of day T" — the set of live transactions and their fields — is then a pure function
//! of (seed, history start, T).
//!
//! # Cursors
//!
//! A sync is the exact difference state(T0) → state(T1), where T0 is the day the client has
//! everything as of and T1 today: `added` (new ids), `modified` (same id, changed fields),
//! `removed` (ids gone, a pending id replaced by its posted row among them), ordered by date,
//! account and row, paged by `count` (at most 500). Cursors are opaque to clients:
//!
//! - `sbx1:<start>:<T>` — everything as of day `T`, with history from `start` (ISO dates);
//!   what the last page of a sync returns;
//! - `sbx1:<start>:<T0>:<T1>:<offset>` — within a sync from `T0` to `T1`, the first `offset`
//!   changes delivered; what an intermediate page (`has_more: true`) returns.
//!
//! No cursor (or `""`) is a first sync: T0 is the day before the history starts, when the
//! item held nothing. A cursor for today gives an empty page with the same cursor. A cursor
//! that does not parse (or is not written exactly as the sandbox writes them) is `Refused`.
//! Every page carries the accounts with their balances as of its T1.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{Datelike, NaiveDate, TimeDelta, Utc, Weekday};
use futures_util::future::BoxFuture;
use kernel::Secret;
use sha2::{Digest, Sha256};

use crate::provider::{
    Exchanged, LinkRequest, LinkToken, Provider, ProviderAccount, ProviderError,
    ProviderTransaction, Removed, SyncPage, Webhook,
};

/// Public tokens `sandbox-public-<16 hex digits>` pick the item's seed.
pub const PUBLIC_TOKEN_PREFIX: &str = "sandbox-public-";

const ACCESS_TOKEN_PREFIX: &str = "sandbox-access-";
const ITEM_PREFIX: &str = "sandbox-item-";
const INSTITUTION: &str = "Balance Sandbox Bank";
const CURRENCY: &str = "EUR";
/// Days of history before the first sync's today.
const HISTORY_DAYS: i64 = 90;
/// The largest page.
const MAX_COUNT: u32 = 500;
/// Seeds whose first four hex digits are these simulate a login that needs renewing.
const DEAD_SEED: u64 = 0xdead;
const CHECKING_OPENING: i64 = 2_500_000;
const CARD_OPENING: i64 = 0;
/// The age (days after its date) from which a row never changes again: posted at 2,
/// removed 3 days later at the latest.
const LAST_CHANGE_AGE: i64 = 5;
/// The longest span a cursor may describe (history start to its last day).
const MAX_SPAN_DAYS: i64 = 20 * 366;
/// Settled day sums kept before the cache starts over.
const SETTLED_CACHE_LIMIT: usize = 200_000;

type Clock = Arc<dyn Fn() -> NaiveDate + Send + Sync>;

/// The sandbox bank. See the module documentation for what it simulates.
pub struct Sandbox {
    clock: Clock,
    /// The history start of each seed seen by a sync in this process.
    starts: Mutex<HashMap<u64, NaiveDate>>,
    /// Per seed and day (days from the common era): the posted sum of that day's rows on
    /// each account once they no longer change. Only an optimisation: balances need every
    /// day of the history, and settled days are the same forever.
    settled: Mutex<HashMap<(u64, i32), [i64; 2]>>,
}

impl Sandbox {
    /// The sandbox on the real calendar (today in UTC).
    pub fn new() -> Self {
        Self::with_clock(Arc::new(|| Utc::now().date_naive()))
    }

    /// The sandbox on a calendar of the caller's (tests advance days with it).
    pub fn with_clock(clock: Arc<dyn Fn() -> NaiveDate + Send + Sync>) -> Self {
        Self {
            clock,
            starts: Mutex::new(HashMap::new()),
            settled: Mutex::new(HashMap::new()),
        }
    }

    fn today(&self) -> NaiveDate {
        (self.clock)()
    }

    /// The history start of a seed, for a first sync today (remembered).
    fn first_sync_start(&self, seed: u64, today: NaiveDate) -> NaiveDate {
        let mut starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        let start = starts
            .entry(seed)
            .or_insert(today - TimeDelta::days(HISTORY_DAYS));
        if *start > today {
            // The clock went back before the history: start over from it.
            *start = today - TimeDelta::days(HISTORY_DAYS);
        }
        *start
    }

    fn remember_start(&self, seed: u64, start: NaiveDate) {
        let mut starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        starts.insert(seed, start);
    }

    fn known_start(&self, seed: u64, today: NaiveDate) -> NaiveDate {
        let starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
        match starts.get(&seed) {
            Some(start) if *start <= today => *start,
            _ => today - TimeDelta::days(HISTORY_DAYS),
        }
    }

    fn exchange_now(&self, public_token: &str) -> Result<Exchanged, ProviderError> {
        let seed = seed_of_public_token(public_token)
            .ok_or_else(|| ProviderError::Refused("the public token is empty".to_owned()))?;
        Ok(Exchanged {
            access_token: Secret::new(format!("{ACCESS_TOKEN_PREFIX}{seed:016x}")),
            item_id: format!("{ITEM_PREFIX}{seed:016x}"),
            institution: Some(INSTITUTION.to_owned()),
        })
    }

    fn accounts_now(
        &self,
        access_token: &Secret<String>,
    ) -> Result<Vec<ProviderAccount>, ProviderError> {
        let seed = live_seed(access_token)?;
        let today = self.today();
        let start = self.known_start(seed, today);
        Ok(self.balances(seed, start, today))
    }

    fn sync_now(
        &self,
        access_token: &Secret<String>,
        cursor: Option<&str>,
        count: u32,
    ) -> Result<SyncPage, ProviderError> {
        let seed = live_seed(access_token)?;
        let today = self.today();
        let count = count.clamp(1, MAX_COUNT) as usize;
        let (start, from, to, offset) = match cursor.filter(|c| !c.is_empty()) {
            None => {
                let start = self.first_sync_start(seed, today);
                (start, start.pred_opt().expect("a sane date"), today, 0)
            }
            Some(text) => match Cursor::parse(text)? {
                Cursor::At { start, day } => {
                    self.remember_start(seed, start);
                    if day >= today {
                        return Ok(SyncPage {
                            accounts: self.balances(seed, start, day),
                            next_cursor: text.to_owned(),
                            has_more: false,
                            history_complete: true,
                            ..SyncPage::default()
                        });
                    }
                    if (today - start).num_days() > MAX_SPAN_DAYS {
                        return Err(refused_cursor());
                    }
                    (start, day, today, 0)
                }
                Cursor::Paging {
                    start,
                    from,
                    to,
                    offset,
                } => {
                    self.remember_start(seed, start);
                    (start, from, to, offset)
                }
            },
        };
        let diff = Diff::between(seed, start, from, to);
        if offset > 0 && offset >= diff.changes.len() {
            return Err(refused_cursor());
        }
        let end = offset.saturating_add(count).min(diff.changes.len());
        let mut page = SyncPage {
            accounts: self.balances(seed, start, to),
            history_complete: true,
            ..SyncPage::default()
        };
        for change in &diff.changes[offset..end] {
            let row = transaction(seed, &diff.rows[change.row], change.stage);
            match change.kind {
                Kind::Added => page.added.push(row),
                Kind::Modified => page.modified.push(row),
                Kind::Removed => page.removed.push(Removed {
                    id: row.id,
                    account_id: Some(row.account_id),
                }),
            }
        }
        if end < diff.changes.len() {
            page.has_more = true;
            page.next_cursor = Cursor::Paging {
                start,
                from,
                to,
                offset: end,
            }
            .to_string();
        } else {
            page.next_cursor = Cursor::At { start, day: to }.to_string();
        }
        Ok(page)
    }

    /// The accounts with their balances as of `today`, for a history from `start`.
    fn balances(&self, seed: u64, start: NaiveDate, today: NaiveDate) -> Vec<ProviderAccount> {
        let mut posted = [0i64; 2];
        let mut pending = [0i64; 2];
        let mut settled = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        if settled.len() > SETTLED_CACHE_LIMIT {
            settled.clear();
        }
        let mut date = start;
        while date <= today {
            if (today - date).num_days() > LAST_CHANGE_AGE {
                let sums = settled
                    .entry((seed, date.num_days_from_ce()))
                    .or_insert_with(|| settled_sums(seed, date));
                posted[0] += sums[0];
                posted[1] += sums[1];
            } else {
                for account in Account::ALL {
                    for row in day(seed, account, date) {
                        match stage(&row, start, today) {
                            Some(Stage::Pending) => pending[account.index()] += row.amount,
                            Some(_) => posted[account.index()] += row.posted_amount,
                            None => {}
                        }
                    }
                }
            }
            date = date.succ_opt().expect("a sane date");
        }
        drop(settled);
        let profile = Profile::of(seed);
        let checking = CHECKING_OPENING + posted[0];
        let card = CARD_OPENING + posted[1];
        vec![
            ProviderAccount {
                id: account_id(seed, Account::Checking),
                name: "Business Checking".to_owned(),
                official_name: Some(format!("{INSTITUTION} Business Checking")),
                mask: Some(format!("{:04}", profile.checking_mask)),
                kind: "depository".to_owned(),
                subtype: Some("checking".to_owned()),
                currency: Some(CURRENCY.to_owned()),
                current_balance: Some(checking),
                available_balance: Some(checking + pending[0]),
            },
            ProviderAccount {
                id: account_id(seed, Account::Card),
                name: "Business Card".to_owned(),
                official_name: Some(format!("{INSTITUTION} Business Credit Card")),
                mask: Some(format!("{:04}", profile.card_mask)),
                kind: "credit".to_owned(),
                subtype: Some("credit card".to_owned()),
                currency: Some(CURRENCY.to_owned()),
                current_balance: Some(card),
                available_balance: Some(card),
            },
        ]
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Provider for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn link_token<'a>(
        &'a self,
        request: &'a LinkRequest,
    ) -> BoxFuture<'a, Result<LinkToken, ProviderError>> {
        Box::pin(async move {
            if let Some(access_token) = &request.access_token {
                seed_of_access_token(access_token)?;
            }
            let mut bytes = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| ProviderError::Unavailable("no randomness".to_owned()))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok(LinkToken {
                link_token: format!("link-sandbox-{hex}"),
                expires_at: Utc::now() + TimeDelta::hours(4),
            })
        })
    }

    fn exchange<'a>(
        &'a self,
        public_token: &'a str,
    ) -> BoxFuture<'a, Result<Exchanged, ProviderError>> {
        Box::pin(async move { self.exchange_now(public_token) })
    }

    fn accounts<'a>(
        &'a self,
        access_token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<Vec<ProviderAccount>, ProviderError>> {
        Box::pin(async move { self.accounts_now(access_token) })
    }

    fn sync<'a>(
        &'a self,
        access_token: &'a Secret<String>,
        cursor: Option<&'a str>,
        count: u32,
    ) -> BoxFuture<'a, Result<SyncPage, ProviderError>> {
        Box::pin(async move { self.sync_now(access_token, cursor, count) })
    }

    fn verify_webhook<'a>(
        &'a self,
        _headers: &'a http::HeaderMap,
        _body: &'a [u8],
    ) -> BoxFuture<'a, Result<Webhook, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::BadWebhook(
                "the sandbox sends no webhooks".to_owned(),
            ))
        })
    }

    fn disconnect<'a>(
        &'a self,
        access_token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move { seed_of_access_token(access_token).map(|_| ()) })
    }
}

// ---------------------------------------------------------------------------------------
// Tokens and cursors

/// The seed a public token picks; `None` for an empty one.
fn seed_of_public_token(public_token: &str) -> Option<u64> {
    if public_token.is_empty() {
        return None;
    }
    if let Some(seed) = public_token
        .strip_prefix(PUBLIC_TOKEN_PREFIX)
        .and_then(parse_hex_seed)
    {
        return Some(seed);
    }
    let digest = Sha256::digest(public_token.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Some(u64::from_be_bytes(first))
}

/// Exactly 16 hex digits.
fn parse_hex_seed(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

fn seed_of_access_token(access_token: &Secret<String>) -> Result<u64, ProviderError> {
    access_token
        .expose()
        .strip_prefix(ACCESS_TOKEN_PREFIX)
        .and_then(parse_hex_seed)
        .ok_or_else(|| ProviderError::Ended {
            code: "INVALID_ACCESS_TOKEN".to_owned(),
            message: "the sandbox does not know this access token".to_owned(),
        })
}

/// The seed of an access token whose login works.
fn live_seed(access_token: &Secret<String>) -> Result<u64, ProviderError> {
    let seed = seed_of_access_token(access_token)?;
    if seed >> 48 == DEAD_SEED {
        return Err(ProviderError::NeedsReauth {
            code: "ITEM_LOGIN_REQUIRED".to_owned(),
            message:
                "the sandbox simulates a login that must be renewed (a seed starting with dead)"
                    .to_owned(),
        });
    }
    Ok(seed)
}

fn refused_cursor() -> ProviderError {
    ProviderError::Refused("the sandbox does not know this cursor".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// Everything as of `day`, history from `start`.
    At { start: NaiveDate, day: NaiveDate },
    /// A sync `from` → `to` with the first `offset` changes delivered.
    Paging {
        start: NaiveDate,
        from: NaiveDate,
        to: NaiveDate,
        offset: usize,
    },
}

impl Cursor {
    fn parse(text: &str) -> Result<Cursor, ProviderError> {
        let parts: Vec<&str> = text.split(':').collect();
        let date = |s: &str| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .filter(|d| (2000..=2200).contains(&d.year()))
                .ok_or_else(refused_cursor)
        };
        let cursor = match parts.as_slice() {
            ["sbx1", start, day] => {
                let (start, day) = (date(start)?, date(day)?);
                if start > day + TimeDelta::days(1) || (day - start).num_days() > MAX_SPAN_DAYS {
                    return Err(refused_cursor());
                }
                Cursor::At { start, day }
            }
            ["sbx1", start, from, to, offset] => {
                let (start, from, to) = (date(start)?, date(from)?, date(to)?);
                let offset: usize = offset.parse().map_err(|_| refused_cursor())?;
                if start > from + TimeDelta::days(1)
                    || from >= to
                    || offset == 0
                    || (to - start).num_days() > MAX_SPAN_DAYS
                {
                    return Err(refused_cursor());
                }
                Cursor::Paging {
                    start,
                    from,
                    to,
                    offset,
                }
            }
            _ => return Err(refused_cursor()),
        };
        // Only the sandbox's own spelling (no `+1`, no leading zeros, no short dates).
        if cursor.to_string() != text {
            return Err(refused_cursor());
        }
        Ok(cursor)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::At { start, day } => write!(f, "sbx1:{start}:{day}"),
            Cursor::Paging {
                start,
                from,
                to,
                offset,
            } => write!(f, "sbx1:{start}:{from}:{to}:{offset}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The state of an item as of a day, and the difference between two days

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Account {
    Checking,
    Card,
}

impl Account {
    const ALL: [Account; 2] = [Account::Checking, Account::Card];

    fn slug(self) -> &'static str {
        match self {
            Account::Checking => "checking",
            Account::Card => "card",
        }
    }

    fn index(self) -> usize {
        match self {
            Account::Checking => 0,
            Account::Card => 1,
        }
    }

    fn salt(self) -> u64 {
        match self {
            Account::Checking => 0x6368_6563_6b69_6e67,
            Account::Card => 0x0000_0000_6361_7264,
        }
    }
}

fn account_id(seed: u64, account: Account) -> String {
    format!("sandbox-acc-{seed:016x}-{}", account.slug())
}

/// What becomes of a posted row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Stays as posted.
    Stays,
    /// Posted with the bank's raw text, cleaned up two days later.
    Enriched,
    /// Removed three days after posting.
    Reversed,
}

/// One generated row: everything its versions are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Generated {
    account: Account,
    /// The day it happened (a purchase's authorisation, a transfer's booking).
    date: NaiveDate,
    /// Its place among the day's rows of its account.
    index: usize,
    /// The amount as first seen (a pending purchase's authorised amount).
    amount: i64,
    /// The amount once posted.
    posted_amount: i64,
    /// The booking date once posted.
    posted_date: NaiveDate,
    /// The bank's text.
    name: String,
    merchant: Option<&'static str>,
    category: &'static str,
    /// A card purchase: pending first.
    pends: bool,
    fate: Fate,
}

impl Generated {
    fn id(&self, seed: u64) -> String {
        format!(
            "sandbox-txn-{seed:016x}-{}-{}-{:02}",
            self.account.slug(),
            self.date.format("%Y%m%d"),
            self.index
        )
    }
}

/// Which version of a row is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Pending,
    Posted,
    /// Posted, with its text cleaned up.
    Enriched,
}

/// The live version of a row as of day `t`, for a history from `start`.
fn stage(row: &Generated, start: NaiveDate, t: NaiveDate) -> Option<Stage> {
    if row.date < start || row.date > t {
        return None;
    }
    let age = (t - row.date).num_days();
    let posted_at = if row.pends {
        if age < 2 {
            return Some(Stage::Pending);
        }
        2
    } else {
        0
    };
    let since_posting = age - posted_at;
    match row.fate {
        Fate::Reversed if since_posting >= 3 => None,
        Fate::Enriched if since_posting >= 2 => Some(Stage::Enriched),
        _ => Some(Stage::Posted),
    }
}

/// A row's version as the provider sends it.
fn transaction(seed: u64, row: &Generated, stage: Stage) -> ProviderTransaction {
    let id = row.id(seed);
    let raw = row.fate == Fate::Enriched && stage != Stage::Enriched;
    let (name, merchant_name) = if raw {
        let reference =
            mix(seed ^ mix(row.date.num_days_from_ce() as u64 ^ row.index as u64)) % 100_000_000;
        (format!("{} REF{reference:08}", row.name), None)
    } else {
        (row.name.clone(), row.merchant.map(str::to_owned))
    };
    let pending = stage == Stage::Pending;
    ProviderTransaction {
        id: if pending {
            format!("{id}-p")
        } else {
            id.clone()
        },
        account_id: account_id(seed, row.account),
        amount: if pending {
            row.amount
        } else {
            row.posted_amount
        },
        currency: Some(CURRENCY.to_owned()),
        date: if pending { row.date } else { row.posted_date },
        authorized_date: row.pends.then_some(row.date),
        pending,
        pending_transaction_id: (row.pends && !pending).then(|| format!("{id}-p")),
        name,
        merchant_name,
        category_hint: Some(row.category.to_owned()),
    }
}

/// The posted sums of a day's rows on each account once they no longer change.
fn settled_sums(seed: u64, date: NaiveDate) -> [i64; 2] {
    let mut sums = [0i64; 2];
    for account in Account::ALL {
        for row in day(seed, account, date) {
            if row.fate != Fate::Reversed {
                sums[account.index()] += row.posted_amount;
            }
        }
    }
    sums
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Added,
    Modified,
    Removed,
}

#[derive(Debug, Clone, Copy)]
struct Change {
    /// Index into [`Diff::rows`].
    row: usize,
    /// The version added or modified to, or the version removed.
    stage: Stage,
    kind: Kind,
}

/// state(from) → state(to), in order of date, account, row (a removal before the addition
/// of the same row).
struct Diff {
    rows: Vec<Generated>,
    changes: Vec<Change>,
}

impl Diff {
    fn between(seed: u64, start: NaiveDate, from: NaiveDate, to: NaiveDate) -> Diff {
        let mut diff = Diff {
            rows: Vec::new(),
            changes: Vec::new(),
        };
        // Rows older than LAST_CHANGE_AGE at `from` are the same at `to`.
        let mut date = start.max(from - TimeDelta::days(LAST_CHANGE_AGE));
        while date <= to {
            for account in Account::ALL {
                for row in day(seed, account, date) {
                    let before = stage(&row, start, from);
                    let after = stage(&row, start, to);
                    if before == after {
                        continue;
                    }
                    let index = diff.rows.len();
                    let mut push = |stage, kind| {
                        diff.changes.push(Change {
                            row: index,
                            stage,
                            kind,
                        })
                    };
                    match (before, after) {
                        (Some(b), Some(a)) if (b == Stage::Pending) == (a == Stage::Pending) => {
                            push(a, Kind::Modified)
                        }
                        _ => {
                            if let Some(b) = before {
                                push(b, Kind::Removed);
                            }
                            if let Some(a) = after {
                                push(a, Kind::Added);
                            }
                        }
                    }
                    diff.rows.push(row);
                }
            }
            date = date.succ_opt().expect("a sane date");
        }
        diff
    }
}

// ---------------------------------------------------------------------------------------
// The generator

/// splitmix64's finaliser.
fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform enough in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// In `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True `percent` times in 100.
    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Upper-case letters and digits, as references on bank statements.
    fn code(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        (0..len)
            .map(|_| ALPHABET[self.index(ALPHABET.len())] as char)
            .collect()
    }
}

/// What does not change from day to day for a seed.
struct Profile {
    checking_mask: u16,
    card_mask: u16,
    landlord: usize,
    rent: i64,
    staff: [(usize, i64); 5],
    staff_count: usize,
    insurance: i64,
    policy: i64,
    accountant: usize,
    accountant_fee: i64,
    telecom: i64,
    telecom_customer: i64,
    bank_fee: i64,
    stripe_day: Weekday,
    customers: [usize; 4],
    seats: i64,
    developers: i64,
    aws_base: i64,
    vat_base: i64,
}

impl Profile {
    fn of(seed: u64) -> Profile {
        let mut r = Rng::new(mix(seed ^ 0x5eed_0fba_1a9c_e0e0));
        let checking_mask = r.below(10_000) as u16;
        let card_mask = r.below(10_000) as u16;
        let landlord = r.index(LANDLORDS.len());
        let rent = r.between(2_900, 3_500) * 100;
        let staff_count = 3 + r.index(3);
        let payroll = r.between(17_000, 19_000) * 100;
        let first = r.index(STAFF.len());
        let stride = 1 + r.index(STAFF.len() - 1);
        let mut weights = [0i64; 5];
        for weight in weights.iter_mut().take(staff_count) {
            *weight = r.between(80, 120);
        }
        let total: i64 = weights.iter().sum();
        let mut staff = [(0usize, 0i64); 5];
        let mut paid = 0;
        for (i, slot) in staff.iter_mut().enumerate().take(staff_count) {
            // STAFF has a prime length: distinct people for every stride.
            let who = (first + i * stride) % STAFF.len();
            let salary = if i + 1 == staff_count {
                payroll - paid
            } else {
                payroll * weights[i] / total
            };
            paid += salary;
            *slot = (who, salary);
        }
        let insurance = r.between(14_000, 26_000);
        let policy = r.between(10_000_000, 99_999_999);
        let accountant = r.index(ACCOUNTANTS.len());
        let accountant_fee = r.between(350, 950) * 100;
        let telecom = r.between(5, 12) * 1_000 + 995;
        let telecom_customer = r.between(100_000_000, 999_999_999);
        let bank_fee = [990, 1_290, 1_490][r.index(3)];
        let stripe_day = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ][r.index(5)];
        let first = r.index(CUSTOMERS.len());
        let stride = 1 + r.index(CUSTOMERS.len() - 1);
        let customers = [0, 1, 2, 3].map(|i| (first + i * stride) % CUSTOMERS.len());
        let seats = r.between(4, 14);
        let developers = r.between(2, seats);
        let aws_base = r.between(18_000, 90_000);
        let vat_base = r.between(2_500, 9_000) * 100;
        Profile {
            checking_mask,
            card_mask,
            landlord,
            rent,
            staff,
            staff_count,
            insurance,
            policy,
            accountant,
            accountant_fee,
            telecom,
            telecom_customer,
            bank_fee,
            stripe_day,
            customers,
            seats,
            developers,
            aws_base,
            vat_base,
        }
    }
}

/// (display name, as the bank writes it)
const LANDLORDS: &[(&str, &str)] = &[
    ("Schröder Immobilien", "SCHROEDER IMMOBILIEN GMBH"),
    ("Hausverwaltung Lindner", "HAUSVERWALTUNG LINDNER KG"),
    ("Spreeufer Gewerbehof", "SPREEUFER GEWERBEHOF GMBH & CO KG"),
    ("Altbau Office Partners", "ALTBAU OFFICE PARTNERS GMBH"),
];

/// A prime number of names (see [`Profile::of`]).
const STAFF: &[&str] = &[
    "ANNA SCHMIDT",
    "LUKAS BECKER",
    "SOFIA ROSSI",
    "MATEO GARCIA",
    "EMMA JANSEN",
    "NOAH FISCHER",
    "MIA WAGNER",
    "JONAS HOFFMANN",
    "LEA KOWALSKI",
    "ELIAS DUBOIS",
    "CLARA NOVAK",
];

const ACCOUNTANTS: &[(&str, &str)] = &[
    ("Steuerberatung Weber", "STEUERBERATUNG WEBER PARTG MBB"),
    ("Kanzlei Brandt & Koch", "KANZLEI BRANDT UND KOCH"),
    ("Nordtax Steuerberater", "NORDTAX STEUERBERATUNGSGES. MBH"),
];

/// A prime number of customers (see [`Profile::of`]).
const CUSTOMERS: &[(&str, &str)] = &[
    ("Nordlicht Software GmbH", "NORDLICHT SOFTWARE GMBH"),
    ("Hansa Logistik AG", "HANSA LOGISTIK AG"),
    ("Bergmann & Partner KG", "BERGMANN UND PARTNER KG"),
    ("Atelier Rive Gauche SAS", "ATELIER RIVE GAUCHE SAS"),
    (
        "Van der Berg Consultancy B.V.",
        "VAN DER BERG CONSULTANCY B.V.",
    ),
    ("Alpina Medtech GmbH", "ALPINA MEDTECH GMBH"),
    ("Kowalski Design Sp. z o.o.", "KOWALSKI DESIGN SP Z O O"),
    ("Solaris Energia S.L.", "SOLARIS ENERGIA S.L."),
    ("Fjord Analytics AS", "FJORD ANALYTICS AS"),
    ("Rheinwerk Maschinenbau GmbH", "RHEINWERK MASCHINENBAU GMBH"),
    ("Lumen Retail Group SE", "LUMEN RETAIL GROUP SE"),
];

/// A place cards are used at. `#` in the text becomes a reference code.
struct Shop {
    weight: u64,
    text: &'static str,
    merchant: Option<&'static str>,
    category: &'static str,
    /// Minor units, of the money going out.
    min: i64,
    max: i64,
    /// Percent of purchases posted with 10–20 % more (a tip, a hotel's extras).
    extra: u64,
}

const fn shop(
    weight: u64,
    text: &'static str,
    merchant: Option<&'static str>,
    category: &'static str,
    range: (i64, i64),
    extra: u64,
) -> Shop {
    Shop {
        weight,
        text,
        merchant,
        category,
        min: range.0,
        max: range.1,
        extra,
    }
}

const TRAVEL: &str = "TRAVEL";
const TRANSPORT: &str = "TRANSPORTATION";
const FOOD: &str = "FOOD_AND_DRINK";
const GOODS: &str = "GENERAL_MERCHANDISE";
const SERVICES: &str = "GENERAL_SERVICES";

#[rustfmt::skip]
const CARD_SHOPS: &[Shop] = &[
    shop(14, "UBER *TRIP # HELP.UBER.COM", Some("Uber"), TRANSPORT, (790, 4_850), 0),
    shop(3, "LUFTHANSA 220# FRANKFURT", Some("Lufthansa"), TRAVEL, (12_900, 89_000), 0),
    shop(6, "DB VERTRIEB GMBH FRANKFURT AM", Some("Deutsche Bahn"), TRAVEL, (1_990, 18_900), 0),
    shop(3, "MOTEL ONE # MUENCHEN", Some("Motel One"), TRAVEL, (8_900, 18_900), 30),
    shop(2, "NH HOTEL BERLIN MITTE", Some("NH Hotels"), TRAVEL, (11_000, 26_000), 30),
    shop(4, "SUMUP *TRATTORIA DA PIETRO BERLIN", Some("Trattoria da Pietro"), FOOD, (2_400, 14_000), 60),
    shop(2, "BORCHARDT RESTAURANT BERLIN", Some("Borchardt"), FOOD, (6_000, 24_000), 60),
    shop(4, "VAPIANO # HAMBURG", Some("Vapiano"), FOOD, (1_800, 9_500), 50),
    shop(8, "AMZN MKTP DE*# AMAZON.DE", Some("Amazon Business"), GOODS, (1_200, 42_000), 0),
    shop(3, "VIKING DIRECT # OFFICE DEPOT", Some("Viking"), GOODS, (900, 15_000), 0),
    shop(2, "MCPAPER # BERLIN", Some("McPaper"), GOODS, (450, 6_500), 0),
    shop(7, "STARBUCKS # BERLIN", Some("Starbucks"), FOOD, (320, 1_850), 0),
    shop(5, "SUMUP *FIVE ELEPHANT BERLIN", Some("Five Elephant"), FOOD, (290, 1_600), 0),
    shop(3, "BALZAC COFFEE # HAMBURG", Some("Balzac Coffee"), FOOD, (280, 1_400), 0),
    shop(3, "SQ *KIEZKIOSK #", None, GOODS, (150, 2_500), 0),
    shop(2, "SHELL # HAMBURG", Some("Shell"), TRANSPORT, (3_500, 9_500), 0),
    shop(2, "PAYPAL *DIGITALOCEAN #", Some("DigitalOcean"), SERVICES, (500, 9_000), 0),
];

#[rustfmt::skip]
const DEBIT_SHOPS: &[Shop] = &[
    shop(4, "AMZN MKTP DE*# AMAZON.DE", Some("Amazon Business"), GOODS, (1_500, 28_000), 0),
    shop(3, "DEUTSCHE POST AG #", Some("Deutsche Post"), SERVICES, (110, 4_500), 0),
    shop(2, "MCPAPER # BERLIN", Some("McPaper"), GOODS, (450, 6_500), 0),
    shop(2, "REWE # BERLIN", Some("REWE"), FOOD, (800, 9_000), 0),
];

/// A day's rows of one account, as they are generated.
struct Rows {
    seed: u64,
    account: Account,
    date: NaiveDate,
    rng: Rng,
    out: Vec<Generated>,
}

impl Rows {
    fn new(seed: u64, account: Account, date: NaiveDate) -> Rows {
        let day = date.num_days_from_ce() as u64;
        Rows {
            seed,
            account,
            date,
            rng: Rng::new(seed ^ mix(day.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ account.salt())),
            out: Vec::new(),
        }
    }

    fn fate(&mut self) -> Fate {
        match self.rng.below(100) {
            0 => Fate::Reversed,
            1..=3 => Fate::Enriched,
            _ => Fate::Stays,
        }
    }

    fn push(
        &mut self,
        amount: i64,
        name: String,
        merchant: Option<&'static str>,
        category: &'static str,
    ) -> &mut Generated {
        debug_assert_ne!(amount, 0);
        let fate = self.fate();
        let index = self.out.len();
        self.out.push(Generated {
            account: self.account,
            date: self.date,
            index,
            amount,
            posted_amount: amount,
            posted_date: self.date,
            name,
            merchant,
            category,
            pends: false,
            fate,
        });
        self.out.last_mut().expect("just pushed")
    }

    /// A transfer between the item's own accounts: never modified or reversed.
    fn transfer(&mut self, amount: i64, name: String) {
        self.push(amount, name, None, "LOAN_PAYMENTS").fate = Fate::Stays;
    }

    /// A card charge: pending first, posted two days later, maybe with a later booking date
    /// and, `extra` percent of the time, 10–20 % more.
    fn card(
        &mut self,
        amount: i64,
        name: String,
        merchant: Option<&'static str>,
        category: &'static str,
        extra: u64,
    ) {
        let posted_amount = if extra > 0 && self.rng.percent(extra) {
            let percent = self.rng.between(10, 20);
            amount + amount * percent / 100
        } else {
            amount
        };
        let later = self.rng.percent(35);
        let date = self.date;
        let row = self.push(amount, name, merchant, category);
        row.pends = true;
        row.posted_amount = posted_amount;
        if later {
            row.posted_date = date.succ_opt().expect("a sane date");
        }
    }

    fn purchase(&mut self, shops: &[Shop], prefix: &str) {
        let total: u64 = shops.iter().map(|s| s.weight).sum();
        let mut pick = self.rng.below(total);
        let shop = shops
            .iter()
            .find(|s| {
                if pick < s.weight {
                    true
                } else {
                    pick -= s.weight;
                    false
                }
            })
            .expect("weights add up");
        let amount = -self.rng.between(shop.min, shop.max);
        let text = if shop.text.contains('#') {
            let code = self.rng.code(5);
            shop.text.replace('#', &code)
        } else {
            shop.text.to_owned()
        };
        self.card(
            amount,
            format!("{prefix} {text}"),
            shop.merchant,
            shop.category,
            shop.extra,
        );
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("a day every month has")
}

/// The business day on or after `day` of the month.
fn on_or_after(year: i32, month: u32, day: u32) -> NaiveDate {
    let mut date = ymd(year, month, day);
    while is_weekend(date) {
        date = date.succ_opt().expect("a sane date");
    }
    date
}

/// The business day on or before `date`.
fn on_or_before(mut date: NaiveDate) -> NaiveDate {
    while is_weekend(date) {
        date = date.pred_opt().expect("a sane date");
    }
    date
}

fn first_of_next_month(date: NaiveDate) -> NaiveDate {
    if date.month() == 12 {
        ymd(date.year() + 1, 1, 1)
    } else {
        ymd(date.year(), date.month() + 1, 1)
    }
}

/// The card's purchases of the month before `date`'s, posted amounts of those not reversed
/// (negative), settled on the 20th.
fn card_statement(seed: u64, profile: &Profile, date: NaiveDate) -> i64 {
    let end = ymd(date.year(), date.month(), 1);
    let mut day = end
        .pred_opt()
        .expect("a sane date")
        .with_day(1)
        .expect("the 1st");
    let mut sum = 0;
    while day < end {
        let mut rows = Rows::new(seed, Account::Card, day);
        card_rows(profile, &mut rows);
        sum += rows
            .out
            .iter()
            .filter(|row| row.fate != Fate::Reversed)
            .map(|row| row.posted_amount)
            .sum::<i64>();
        day = day.succ_opt().expect("a sane date");
    }
    sum
}

#[cfg(test)]
thread_local! {
    /// How many times this thread called [`day`].
    static DAYS_GENERATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The rows of one account on one day: a pure function of its arguments.
fn day(seed: u64, account: Account, date: NaiveDate) -> Vec<Generated> {
    #[cfg(test)]
    DAYS_GENERATED.with(|n| n.set(n.get() + 1));
    let profile = Profile::of(seed);
    let mut rows = Rows::new(seed, account, date);
    match account {
        Account::Checking => checking_rows(&profile, &mut rows),
        Account::Card => {
            card_rows(&profile, &mut rows);
            if date == on_or_after(date.year(), date.month(), 20) {
                let statement = card_statement(seed, &profile, date);
                if statement != 0 {
                    rows.transfer(-statement, "PAYMENT RECEIVED - THANK YOU".to_owned());
                }
            }
        }
    }
    rows.out
}

fn checking_rows(p: &Profile, rows: &mut Rows) {
    let date = rows.date;
    let (year, month) = (date.year(), date.month());
    let period = format!("{month:02}/{year}");
    if date == on_or_after(year, month, 1) {
        let (landlord, text) = LANDLORDS[p.landlord];
        rows.push(
            -p.rent,
            format!("SEPA DIRECT DEBIT {text} RENT OFFICE {period}"),
            Some(landlord),
            "RENT_AND_UTILITIES",
        );
    }
    if date == on_or_after(year, month, 5) {
        rows.push(
            -p.insurance,
            format!(
                "SEPA DIRECT DEBIT ALLIANZ VERSICHERUNGS-AG POLICE {} {period}",
                p.policy
            ),
            Some("Allianz"),
            SERVICES,
        );
    }
    if date == on_or_after(year, month, 6) {
        rows.push(
            -p.telecom,
            format!(
                "SEPA DIRECT DEBIT TELEKOM DEUTSCHLAND GMBH KD-NR {}",
                p.telecom_customer
            ),
            Some("Telekom"),
            "RENT_AND_UTILITIES",
        );
    }
    if date == on_or_after(year, month, 10) {
        let (accountant, text) = ACCOUNTANTS[p.accountant];
        rows.push(
            -p.accountant_fee,
            format!("SEPA CREDIT TRANSFER {text} INVOICE {period}"),
            Some(accountant),
            SERVICES,
        );
        if matches!(month, 1 | 4 | 7 | 10) {
            let quarter = if month == 1 { 4 } else { (month - 1) / 3 };
            let vat_year = if month == 1 { year - 1 } else { year };
            let amount = p.vat_base * rows.rng.between(80, 125) / 100;
            rows.push(
                -amount,
                format!("SEPA DIRECT DEBIT FINANZAMT BERLIN USTVA Q{quarter}/{vat_year}"),
                Some("Finanzamt"),
                "GOVERNMENT_AND_NON_PROFIT",
            );
        }
    }
    if date == on_or_after(year, month, 20) {
        let statement = card_statement(rows.seed, p, date);
        if statement != 0 {
            rows.transfer(
                statement,
                format!("CREDIT CARD SETTLEMENT {:04} {period}", p.card_mask),
            );
        }
    }
    if date == on_or_before(ymd(year, month, 25)) {
        for &(who, salary) in &p.staff[..p.staff_count] {
            rows.push(
                -salary,
                format!("SEPA CREDIT TRANSFER SALARY {} {period}", STAFF[who]),
                None,
                "TRANSFER_OUT",
            );
        }
    }
    if date == on_or_before(first_of_next_month(date).pred_opt().expect("a sane date")) {
        let fee = p.bank_fee + rows.rng.between(0, 12) * 50;
        rows.push(
            -fee,
            format!("ACCOUNT MAINTENANCE FEE {period}"),
            None,
            "BANK_FEES",
        );
    }
    if is_weekend(date) {
        return;
    }
    if date.weekday() == p.stripe_day {
        let amount = rows.rng.between(150_000, 650_000);
        let code = rows.rng.code(8);
        rows.push(
            amount,
            format!("STRIPE PAYMENTS EUROPE LTD STRIPE PAYOUT ST-{code}"),
            Some("Stripe"),
            "INCOME",
        );
    }
    if rows.rng.percent(16) {
        let payments = 1 + usize::from(rows.rng.percent(15));
        for _ in 0..payments {
            let (customer, text) = CUSTOMERS[p.customers[rows.rng.index(p.customers.len())]];
            let amount = rows.rng.between(1_200, 11_000) * 100 + rows.rng.between(0, 99);
            let invoice = rows.rng.between(1, 999);
            rows.push(
                amount,
                format!("SEPA CREDIT TRANSFER {text} INVOICE INV-{year}-{invoice:04}"),
                Some(customer),
                "INCOME",
            );
        }
    }
    if rows.rng.percent(22) {
        rows.purchase(DEBIT_SHOPS, &format!("DEBIT CARD {:04}", p.checking_mask));
    }
}

fn card_rows(p: &Profile, rows: &mut Rows) {
    let date = rows.date;
    let prefix = format!("CARD {:04}", p.card_mask);
    match date.day() {
        2 => {
            let amount = p.aws_base * rows.rng.between(85, 130) / 100;
            rows.card(
                -amount,
                format!("{prefix} AWS EMEA AWS.AMAZON.CO LU"),
                Some("Amazon Web Services"),
                SERVICES,
                0,
            );
        }
        3 => {
            let code = rows.rng.code(6);
            rows.card(
                -p.seats * 1_360,
                format!("{prefix} GOOGLE *WORKSPACE_{code} CC@GOOGLE.COM"),
                Some("Google Workspace"),
                SERVICES,
                0,
            );
        }
        8 => {
            let code = rows.rng.code(8);
            rows.card(
                -p.seats * 825,
                format!("{prefix} SLACK T0{code} DUBLIN"),
                Some("Slack"),
                SERVICES,
                0,
            );
        }
        12 => {
            rows.card(
                -p.developers * 400,
                format!("{prefix} GITHUB, INC. GITHUB.COM CA"),
                Some("GitHub"),
                SERVICES,
                0,
            );
        }
        15 => {
            let code = rows.rng.code(6);
            rows.card(
                -p.seats * 775,
                format!("{prefix} ATLASSIAN {code} AMSTERDAM"),
                Some("Atlassian"),
                SERVICES,
                0,
            );
        }
        _ => {}
    }
    if is_weekend(date) {
        return;
    }
    let purchases = match rows.rng.below(100) {
        0..=14 => 0,
        15..=44 => 1,
        45..=74 => 2,
        75..=89 => 3,
        _ => 4,
    };
    for _ in 0..purchases {
        rows.purchase(CARD_SHOPS, &prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Instant;

    /// The futures of the sandbox never wait.
    fn now<T>(future: BoxFuture<'_, T>) -> T {
        future.now_or_never().expect("the sandbox never waits")
    }

    /// A Wednesday.
    fn base_day() -> NaiveDate {
        ymd(2026, 3, 18)
    }

    struct Bank {
        sandbox: Sandbox,
        offset: Arc<AtomicI64>,
    }

    impl Bank {
        fn at(date: NaiveDate) -> Bank {
            let offset = Arc::new(AtomicI64::new(0));
            let days = offset.clone();
            let sandbox = Sandbox::with_clock(Arc::new(move || {
                date + TimeDelta::days(days.load(Ordering::SeqCst))
            }));
            Bank { sandbox, offset }
        }

        fn advance(&self, days: i64) {
            self.offset.fetch_add(days, Ordering::SeqCst);
        }

        fn today(&self) -> NaiveDate {
            self.sandbox.today()
        }

        fn connect(&self, seed: u64) -> Secret<String> {
            let token = format!("{PUBLIC_TOKEN_PREFIX}{seed:016x}");
            now(self.sandbox.exchange(&token))
                .expect("the exchange works")
                .access_token
        }

        /// Every page of one sync from `cursor`.
        fn sync_all(
            &self,
            token: &Secret<String>,
            cursor: Option<&str>,
            count: u32,
        ) -> Vec<SyncPage> {
            let mut pages = Vec::new();
            let mut cursor = cursor.map(str::to_owned);
            loop {
                let page = now(self.sandbox.sync(token, cursor.as_deref(), count))
                    .expect("the sync works");
                assert!(
                    page.added.len() + page.modified.len() + page.removed.len() <= count as usize,
                    "a page holds at most count rows"
                );
                cursor = Some(page.next_cursor.clone());
                let more = page.has_more;
                pages.push(page);
                if !more {
                    return pages;
                }
                assert!(pages.len() < 10_000, "the sync ends");
            }
        }
    }

    type State = HashMap<String, ProviderTransaction>;

    /// Applies a page strictly: an added id is new, a modified or removed one is known.
    fn apply(state: &mut State, page: &SyncPage) {
        for row in &page.added {
            assert!(
                state.insert(row.id.clone(), row.clone()).is_none(),
                "added twice: {}",
                row.id
            );
        }
        for row in &page.modified {
            let old = state.insert(row.id.clone(), row.clone());
            let old = old.unwrap_or_else(|| panic!("modified before added: {}", row.id));
            assert_ne!(&old, row, "a modification changes something");
        }
        for gone in &page.removed {
            assert!(
                state.remove(&gone.id).is_some(),
                "removed unknown: {}",
                gone.id
            );
        }
    }

    fn rows_of(pages: &[SyncPage]) -> State {
        let mut state = State::new();
        for page in pages {
            apply(&mut state, page);
        }
        state
    }

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_seed_other_data() {
        for offset in 0..40 {
            let date = base_day() - TimeDelta::days(offset);
            for account in Account::ALL {
                assert_eq!(day(42, account, date), day(42, account, date));
            }
        }
        let one = Bank::at(base_day());
        let two = Bank::at(base_day());
        let a = rows_of(&one.sync_all(&one.connect(42), None, 500));
        let b = rows_of(&two.sync_all(&two.connect(42), None, 500));
        assert_eq!(a, b);
        let c = rows_of(&two.sync_all(&two.connect(43), None, 500));
        let amounts = |s: &State| {
            let mut v: Vec<(NaiveDate, i64)> = s.values().map(|r| (r.date, r.amount)).collect();
            v.sort();
            v
        };
        assert_ne!(amounts(&a), amounts(&c));
        assert!(a.keys().all(|id| id.contains("000000000000002a")));
        assert_eq!(
            now(one.sandbox.accounts(&one.connect(42))).unwrap(),
            now(two.sandbox.accounts(&two.connect(42))).unwrap()
        );
    }

    #[test]
    fn amounts_are_never_zero_and_have_the_sign_of_their_direction() {
        for seed in [0, 1, 42, 0x1234_5678_9abc_def0, u64::MAX] {
            let mut date = ymd(2025, 1, 1);
            while date < ymd(2026, 1, 1) {
                for account in Account::ALL {
                    for row in day(seed, account, date) {
                        assert_ne!(row.amount, 0, "{row:?}");
                        assert_ne!(row.posted_amount, 0, "{row:?}");
                        assert_eq!(row.amount.signum(), row.posted_amount.signum());
                        if row.pends {
                            assert!(row.amount < 0, "purchases are money out: {row:?}");
                            assert!(row.posted_amount <= row.amount, "a tip adds: {row:?}");
                        }
                        if row.category == "INCOME" {
                            assert!(row.amount > 0, "{row:?}");
                        }
                    }
                }
                date = date.succ_opt().unwrap();
            }
        }
    }

    #[test]
    fn the_generator_writes_a_business_month() {
        let seed = 7;
        let mut names = Vec::new();
        let mut categories = HashSet::new();
        let mut date = ymd(2026, 2, 1);
        while date < ymd(2026, 3, 1) {
            for account in Account::ALL {
                for row in day(seed, account, date) {
                    names.push(row.name.clone());
                    categories.insert(row.category);
                }
            }
            date = date.succ_opt().unwrap();
        }
        for needle in [
            "RENT OFFICE 02/2026",
            "SALARY",
            "GOOGLE *WORKSPACE",
            "SLACK",
            "GITHUB",
            "AWS EMEA",
            "ATLASSIAN",
            "ALLIANZ",
            "STRIPE PAYOUT",
            "INVOICE INV-2026-",
            "ACCOUNT MAINTENANCE FEE",
            "CREDIT CARD SETTLEMENT",
            "PAYMENT RECEIVED",
        ] {
            assert!(
                names.iter().any(|n| n.contains(needle)),
                "no {needle} in {names:#?}"
            );
        }
        let salaries = names.iter().filter(|n| n.contains("SALARY")).count();
        assert!((3..=5).contains(&salaries));
        for category in [
            "TRAVEL",
            "RENT_AND_UTILITIES",
            "INCOME",
            "FOOD_AND_DRINK",
            "BANK_FEES",
        ] {
            assert!(categories.contains(category), "no {category}");
        }
        // Rent on the first business day, payroll on the 25th or the Friday before.
        let rent = day(seed, Account::Checking, ymd(2026, 2, 2));
        assert!(
            rent.iter()
                .any(|r| r.name.contains("RENT") && r.amount <= -290_000)
        );
        let payroll: i64 = day(seed, Account::Checking, ymd(2026, 2, 25))
            .iter()
            .filter(|r| r.name.contains("SALARY"))
            .map(|r| r.amount)
            .sum();
        assert!((-1_900_000..=-1_700_000).contains(&payroll), "{payroll}");
    }

    #[test]
    fn the_first_sync_delivers_about_ninety_days_with_some_pending() {
        let bank = Bank::at(base_day());
        let token = bank.connect(0x00c0_ffee_0000_0001);
        let started = Instant::now();
        let pages = bank.sync_all(&token, None, 500);
        let elapsed = started.elapsed();
        eprintln!("first sync of 90 days: {elapsed:?} ({} pages)", pages.len());
        let today = bank.today();
        let state = rows_of(&pages);
        assert!(
            pages
                .iter()
                .all(|p| p.modified.is_empty() && p.removed.is_empty())
        );
        assert!(state.len() > 150, "{} rows", state.len());
        let oldest = state
            .values()
            .map(|r| r.authorized_date.unwrap_or(r.date))
            .min()
            .unwrap();
        assert!(oldest >= today - TimeDelta::days(HISTORY_DAYS));
        assert!(oldest <= today - TimeDelta::days(HISTORY_DAYS - 5));
        let pending: Vec<_> = state.values().filter(|r| r.pending).collect();
        assert!(!pending.is_empty());
        for row in &pending {
            assert!(row.id.ends_with("-p"));
            assert!(row.date >= today - TimeDelta::days(1));
            assert!(row.pending_transaction_id.is_none());
        }
        for row in state.values() {
            assert_eq!(row.currency.as_deref(), Some(CURRENCY));
            assert!(row.category_hint.is_some());
            assert!(row.date <= today);
            assert!(row.id.starts_with("sandbox-txn-"));
        }
        assert!(
            state
                .values()
                .any(|r| r.merchant_name.as_deref() == Some("Uber")
                    || r.merchant_name.as_deref() == Some("Starbucks"))
        );
        let last = pages.last().unwrap();
        assert_eq!(
            last.next_cursor,
            format!("sbx1:{}:{today}", today - TimeDelta::days(HISTORY_DAYS))
        );
        assert_eq!(last.accounts.len(), 2);
        assert!(elapsed.as_millis() < 2_000, "{elapsed:?}");
    }

    #[test]
    fn a_day_later_pending_rows_are_removed_and_added_as_posted() {
        let bank = Bank::at(base_day());
        let yesterday = bank.today() - TimeDelta::days(1);
        // A seed with a few purchases yesterday (most seeds have some).
        let seed = (1..)
            .find(|&s| {
                day(s, Account::Card, yesterday)
                    .iter()
                    .filter(|r| r.pends)
                    .count()
                    >= 2
            })
            .unwrap();
        let token = bank.connect(seed);
        let pages = bank.sync_all(&token, None, 500);
        let before = rows_of(&pages);
        let settling: Vec<&ProviderTransaction> = before
            .values()
            .filter(|r| r.pending && r.date == yesterday)
            .collect();
        assert!(!settling.is_empty(), "pending rows from yesterday");
        bank.advance(1);
        let next = bank.sync_all(&token, Some(&pages.last().unwrap().next_cursor), 500);
        let removed: HashSet<&str> = next
            .iter()
            .flat_map(|p| p.removed.iter().map(|r| r.id.as_str()))
            .collect();
        let added: HashMap<&str, &ProviderTransaction> = next
            .iter()
            .flat_map(|p| p.added.iter())
            .filter_map(|r| r.pending_transaction_id.as_deref().map(|p| (p, r)))
            .collect();
        for pending in settling {
            assert!(
                removed.contains(pending.id.as_str()),
                "{} removed",
                pending.id
            );
            let posted = added[pending.id.as_str()];
            assert_eq!(format!("{}-p", posted.id), pending.id);
            assert!(!posted.pending);
            assert_eq!(posted.account_id, pending.account_id);
            assert_eq!(posted.authorized_date, Some(pending.date));
            assert!(
                posted.date == pending.date || posted.date == pending.date + TimeDelta::days(1)
            );
            assert!(posted.amount <= pending.amount);
        }
        // Today's purchases arrive pending.
        assert!(
            next.iter()
                .flat_map(|p| p.added.iter())
                .any(|r| r.pending && r.date == bank.today())
        );
    }

    #[test]
    fn posted_rows_may_differ_from_their_pending_ones() {
        let mut tipped = 0;
        let mut later = 0;
        let mut date = ymd(2026, 1, 1);
        while date < ymd(2026, 4, 1) {
            for row in day(99, Account::Card, date) {
                tipped += usize::from(row.posted_amount != row.amount);
                later += usize::from(row.posted_date != row.date);
                if row.posted_amount != row.amount {
                    assert!(
                        matches!(row.category, "FOOD_AND_DRINK" | "TRAVEL"),
                        "{row:?}"
                    );
                    let percent = (row.posted_amount - row.amount) * 100 / row.amount;
                    assert!((9..=20).contains(&percent), "{percent} % on {row:?}");
                }
            }
            date = date.succ_opt().unwrap();
        }
        assert!(tipped > 0 && later > 0, "{tipped} tipped, {later} later");
    }

    /// The key test: syncing day by day in small pages ends with exactly the rows of one
    /// sync from nothing to the last day.
    #[test]
    fn replaying_day_by_day_in_small_pages_matches_one_big_sync() {
        let bank = Bank::at(base_day());
        let seed = 0x0bad_cafe_f00d_0001;
        let token = bank.connect(seed);
        let start = bank.today() - TimeDelta::days(HISTORY_DAYS);
        let mut state = State::new();
        let mut cursor: Option<String> = None;
        let (mut modified, mut reversed, mut settled) = (0, 0, 0);
        for step in 0..=20 {
            if step > 0 {
                bank.advance(1);
            }
            let pages = bank.sync_all(&token, cursor.as_deref(), 7);
            for page in &pages {
                for gone in &page.removed {
                    if gone.id.ends_with("-p") {
                        settled += 1;
                    } else {
                        reversed += 1;
                    }
                }
                modified += page.modified.len();
                apply(&mut state, page);
                // Every page's accounts are as of the sync's last day.
                assert_eq!(page.accounts, pages.last().unwrap().accounts);
            }
            let last = pages.last().unwrap();
            assert_eq!(last.next_cursor, format!("sbx1:{start}:{}", bank.today()));
            cursor = Some(last.next_cursor.clone());
        }
        assert!(
            modified > 0 && reversed > 0 && settled > 0,
            "{modified} modified, {reversed} reversed, {settled} settled"
        );
        // One sync from before the history to today, through a cursor of the same history.
        let from_nothing = format!("sbx1:{start}:{}", start - TimeDelta::days(1));
        let big = rows_of(&bank.sync_all(&token, Some(&from_nothing), 500));
        assert_eq!(state, big);
        // A first sync again (no cursor) keeps the item's history start.
        let again = rows_of(&bank.sync_all(&token, None, 500));
        assert_eq!(state, again);
        // And a sync over the twenty days at once gives the same too.
        let fresh = Bank::at(base_day());
        let token = fresh.connect(seed);
        let pages = fresh.sync_all(&token, None, 500);
        let mut jumped = rows_of(&pages);
        fresh.advance(20);
        for page in fresh.sync_all(&token, Some(&pages.last().unwrap().next_cursor), 3) {
            apply(&mut jumped, &page);
        }
        assert_eq!(state, jumped);
    }

    #[test]
    fn balances_are_the_opening_balance_plus_the_posted_rows() {
        let bank = Bank::at(base_day());
        let token = bank.connect(0xfeed_0000_0000_0042);
        let mut state = State::new();
        let mut cursor: Option<String> = None;
        for step in 0..8 {
            if step > 0 {
                bank.advance(3);
            }
            let pages = bank.sync_all(&token, cursor.as_deref(), 50);
            for page in &pages {
                apply(&mut state, page);
            }
            let accounts = &pages.last().unwrap().accounts;
            assert_eq!(accounts, &now(bank.sandbox.accounts(&token)).unwrap());
            for account in accounts {
                let sum = |pending: bool| -> i64 {
                    state
                        .values()
                        .filter(|r| r.account_id == account.id && r.pending == pending)
                        .map(|r| r.amount)
                        .sum()
                };
                let opening = if account.id.ends_with("-checking") {
                    CHECKING_OPENING
                } else {
                    CARD_OPENING
                };
                let current = opening + sum(false);
                assert_eq!(account.current_balance, Some(current), "{}", account.id);
                let available = if account.kind == "credit" {
                    current
                } else {
                    current + sum(true)
                };
                assert_eq!(account.available_balance, Some(available), "{}", account.id);
                assert_eq!(account.currency.as_deref(), Some("EUR"));
                assert_eq!(account.mask.as_ref().map(String::len), Some(4));
            }
            cursor = Some(pages.last().unwrap().next_cursor.clone());
        }
        let accounts = now(bank.sandbox.accounts(&token)).unwrap();
        assert_eq!(accounts[0].name, "Business Checking");
        assert_eq!(accounts[0].kind, "depository");
        assert_eq!(accounts[0].subtype.as_deref(), Some("checking"));
        assert_eq!(accounts[1].name, "Business Card");
        assert_eq!(accounts[1].kind, "credit");
        assert_eq!(accounts[1].subtype.as_deref(), Some("credit card"));
        assert_eq!(accounts[0].id, "sandbox-acc-feed000000000042-checking");
        assert_eq!(accounts[1].id, "sandbox-acc-feed000000000042-card");
    }

    #[test]
    fn paging_with_count_one_gives_the_same_rows_in_the_same_order() {
        let bank = Bank::at(base_day());
        let token = bank.connect(3);
        let big = bank.sync_all(&token, None, 500);
        let small = bank.sync_all(&token, None, 1);
        let flatten = |pages: &[SyncPage]| -> Vec<String> {
            pages
                .iter()
                .flat_map(|p| p.added.iter().map(|r| r.id.clone()))
                .collect()
        };
        assert_eq!(flatten(&big), flatten(&small));
        assert_eq!(small.len(), flatten(&small).len());
        assert!(
            small[..small.len() - 1]
                .iter()
                .all(|p| p.has_more && p.next_cursor.split(':').count() == 5)
        );
        assert_eq!(
            big.last().unwrap().next_cursor,
            small.last().unwrap().next_cursor
        );
        // The next day in pages of one, too.
        let cursor = big.last().unwrap().next_cursor.clone();
        bank.advance(1);
        let one = bank.sync_all(&token, Some(&cursor), 1);
        let all = bank.sync_all(&token, Some(&cursor), 500);
        assert_eq!(all.len(), 1);
        let mut a = rows_of(&big);
        let mut b = a.clone();
        one.iter().for_each(|p| apply(&mut a, p));
        all.iter().for_each(|p| apply(&mut b, p));
        assert_eq!(a, b);
        // A count above 500 is 500.
        let capped = bank.sync_all(&token, None, 100_000);
        assert!(capped.iter().all(|p| p.added.len() <= 500));
    }

    #[test]
    fn a_cursor_for_today_gives_an_empty_page_and_the_same_cursor() {
        let bank = Bank::at(base_day());
        let token = bank.connect(11);
        let pages = bank.sync_all(&token, None, 500);
        let cursor = pages.last().unwrap().next_cursor.clone();
        let page = now(bank.sandbox.sync(&token, Some(&cursor), 100)).unwrap();
        assert!(page.added.is_empty() && page.modified.is_empty() && page.removed.is_empty());
        assert!(!page.has_more);
        assert_eq!(page.next_cursor, cursor);
        assert_eq!(page.accounts, pages.last().unwrap().accounts);
    }

    #[test]
    fn a_malformed_cursor_is_refused() {
        let bank = Bank::at(base_day());
        let token = bank.connect(5);
        let pages = bank.sync_all(&token, None, 10);
        let good = pages[0].next_cursor.clone();
        assert!(good.starts_with("sbx1:"));
        for bad in [
            "nonsense",
            "sbx1:",
            "sbx1:2026-01-01",
            "sbx2:2025-12-18:2026-03-18",
            "sbx1:2025-12-18:2026-3-18",
            "sbx1:2026-03-20:2026-03-18",
            "sbx1:2025-12-18:2025-12-17:2026-03-18:+5",
            "sbx1:2025-12-18:2025-12-17:2026-03-18:0",
            "sbx1:2025-12-18:2025-12-17:2026-03-18:99999",
            "sbx1:2025-12-18:2026-03-18:2026-03-18:5",
            "sbx1:2025-12-18:2025-12-17:2026-03-18:5:6",
            "sbx1:1900-01-01:2026-03-18",
            "sbx1:2025-12-18:2025-12-17:2026-03-18:-1",
        ] {
            let error = now(bank.sandbox.sync(&token, Some(bad), 10)).expect_err(bad);
            assert!(
                matches!(error, ProviderError::Refused(_)),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn a_dead_seed_needs_a_new_login() {
        let bank = Bank::at(base_day());
        let token = bank.connect(0xdead_0000_0000_0001);
        let expect_reauth = |error: ProviderError| match error {
            ProviderError::NeedsReauth { code, .. } => assert_eq!(code, "ITEM_LOGIN_REQUIRED"),
            other => panic!("{other:?}"),
        };
        expect_reauth(now(bank.sandbox.sync(&token, None, 100)).unwrap_err());
        expect_reauth(now(bank.sandbox.accounts(&token)).unwrap_err());
        let repair = LinkRequest {
            client_user_id: "tenant".to_owned(),
            webhook: None,
            access_token: Some(token.clone()),
        };
        assert!(now(bank.sandbox.link_token(&repair)).is_ok());
        assert!(now(bank.sandbox.disconnect(&token)).is_ok());
        // A seed merely containing dead elsewhere works.
        let fine = bank.connect(0x0000_dead_0000_0001);
        assert!(now(bank.sandbox.accounts(&fine)).is_ok());
    }

    #[test]
    fn tokens_exchange_and_link_as_documented() {
        let bank = Bank::at(base_day());
        let sandbox = &bank.sandbox;
        assert_eq!(sandbox.name(), "sandbox");
        let exchanged = now(sandbox.exchange("sandbox-public-00000000000000ab")).unwrap();
        assert_eq!(
            exchanged.access_token.expose(),
            "sandbox-access-00000000000000ab"
        );
        assert_eq!(exchanged.item_id, "sandbox-item-00000000000000ab");
        assert_eq!(
            exchanged.institution.as_deref(),
            Some("Balance Sandbox Bank")
        );
        let hashed = now(sandbox.exchange("public-sandbox-from-somewhere")).unwrap();
        let again = now(sandbox.exchange("public-sandbox-from-somewhere")).unwrap();
        assert_eq!(hashed.access_token, again.access_token);
        assert_ne!(hashed.access_token, exchanged.access_token);
        assert!(parse_hex_seed(&hashed.item_id["sandbox-item-".len()..]).is_some());
        assert!(matches!(
            now(sandbox.exchange("")),
            Err(ProviderError::Refused(_))
        ));

        for bad in [
            "",
            "sandbox-access-xyz",
            "sandbox-access-00000000000000ab0",
            "access-sandbox-123",
        ] {
            let bad = Secret::new(bad.to_owned());
            for error in [
                now(sandbox.accounts(&bad)).unwrap_err(),
                now(sandbox.sync(&bad, None, 10)).unwrap_err(),
                now(sandbox.disconnect(&bad)).unwrap_err(),
            ] {
                assert_eq!(error.code(), "INVALID_ACCESS_TOKEN");
                assert!(matches!(error, ProviderError::Ended { .. }));
            }
        }

        let request = LinkRequest {
            client_user_id: "tenant".to_owned(),
            webhook: Some("https://example.test/hook".to_owned()),
            access_token: None,
        };
        let before = Utc::now();
        let link = now(sandbox.link_token(&request)).unwrap();
        let hex = link.link_token.strip_prefix("link-sandbox-").unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(link.expires_at >= before + TimeDelta::hours(4));
        assert!(link.expires_at <= Utc::now() + TimeDelta::hours(4));
        assert_ne!(
            now(sandbox.link_token(&request)).unwrap().link_token,
            link.link_token
        );
        let update = LinkRequest {
            access_token: Some(exchanged.access_token.clone()),
            ..request.clone()
        };
        assert!(now(sandbox.link_token(&update)).is_ok());
        let broken = LinkRequest {
            access_token: Some(Secret::new("nope".to_owned())),
            ..request
        };
        assert!(matches!(
            now(sandbox.link_token(&broken)),
            Err(ProviderError::Ended { .. })
        ));

        let webhook = now(sandbox.verify_webhook(&http::HeaderMap::new(), b"{}")).unwrap_err();
        assert_eq!(
            webhook,
            ProviderError::BadWebhook("the sandbox sends no webhooks".to_owned())
        );
    }

    #[test]
    fn generating_is_fast() {
        let started = Instant::now();
        let mut rows = 0;
        let mut date = base_day() - TimeDelta::days(HISTORY_DAYS);
        while date <= base_day() {
            for account in Account::ALL {
                rows += day(1, account, date).len();
            }
            date = date.succ_opt().unwrap();
        }
        let elapsed = started.elapsed();
        eprintln!("91 days × 2 accounts: {rows} rows in {elapsed:?}");
        assert!(
            elapsed.as_millis() < 91,
            "well under a millisecond a day: {elapsed:?}"
        );
        // A day's sync looks at the days that can change, not the whole history.
        let bank = Bank::at(base_day());
        let token = bank.connect(1);
        let cursor = bank.sync_all(&token, None, 500).pop().unwrap().next_cursor;
        bank.advance(1);
        let generated = DAYS_GENERATED.with(std::cell::Cell::get);
        let started = Instant::now();
        bank.sync_all(&token, Some(&cursor), 500);
        eprintln!("a day's sync: {:?}", started.elapsed());
        let generated = DAYS_GENERATED.with(std::cell::Cell::get) - generated;
        // The diff: from LAST_CHANGE_AGE days before the cursor's day to today; the
        // balances: the days up to LAST_CHANGE_AGE old, and the one day that settled since
        // (older ones are cached).
        let bound = 2 * ((LAST_CHANGE_AGE + 2) + (LAST_CHANGE_AGE + 1) + 1) as usize;
        assert!(
            generated <= bound,
            "{generated} days generated for one day's sync"
        );
        let diff = Diff::between(
            1,
            base_day() - TimeDelta::days(HISTORY_DAYS),
            base_day(),
            bank.today(),
        );
        assert!(
            diff.rows
                .iter()
                .all(|r| r.date >= base_day() - TimeDelta::days(LAST_CHANGE_AGE))
        );
    }
}
