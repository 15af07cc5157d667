//! A Plaid stand-in that speaks Plaid's JSON (API version `2020-09-14`) on loopback, so the
//! banking client and the sync are tested against real HTTP, real JSON and Plaid's real
//! failure shapes without a network or a Plaid account.
//!
//! What it serves (all `POST`, all requiring the `PLAID-CLIENT-ID: `[`CLIENT_ID`] and
//! `PLAID-SECRET: `[`SECRET`] headers, else 400 `INVALID_API_KEYS`, and
//! `Plaid-Version: 2020-09-14`):
//!
//! - `/sandbox/public_token/create`: a new item with two accounts (a USD checking account
//!   with `current` 1200.50 and `available` 1100.50, and a USD credit card owing 410.00 with
//!   1590.00 available of a 2000.00 limit), answered with a single-use `public-sandbox-…`;
//!   [`PlaidStandIn::create_item`] does the same without HTTP;
//! - `/link/token/create`: a `link-sandbox-…` token that expires 4 hours later; each is
//!   recorded ([`PlaidStandIn::link_tokens`]) with whether it was for update mode;
//! - `/item/public_token/exchange`: the public token for the item's `access-sandbox-…`
//!   (once: the second exchange is 400 `INVALID_PUBLIC_TOKEN`);
//! - `/accounts/get`, `/item/remove` (afterwards the token answers `ITEM_NOT_FOUND`);
//! - `/transactions/sync`: pages of the item's change log (see below);
//! - `/webhook_verification_key/get`: the ES256 P-256 key, generated at start, that
//!   [`PlaidStandIn::sign_webhook`] signs `Plaid-Verification` JWTs with.
//!
//! # The change log and cursors
//!
//! Each item has a log of changes that tests append to with [`PlaidStandIn::add`],
//! [`PlaidStandIn::modify`] and [`PlaidStandIn::remove`]. `/transactions/sync` pages it: a
//! cursor is an opaque string encoding the item and a position in the log (and whether it
//! was handed out mid-loop, `has_more: true`); no cursor (or `""`) starts at the beginning;
//! `count` (default 100, 1 to 500, else 400 `INVALID_FIELD`) bounds a page; every page
//! carries the item's `accounts` with their current balances. Changes are listed as they
//! were logged, one entry each, without the coalescing real Plaid does.
//!
//! Amounts and balances are written as JSON number literals exactly as the test gave them
//! (`"72.10"` is written `72.10`, never through a float), with Plaid's sign: positive is
//! money out of the account.
//!
//! # Faults
//!
//! [`PlaidStandIn::fail_next`] arms one [`Fault`] for the next call to any endpoint except
//! the `/sandbox/…` helpers; it is used once, then the stand-in answers normally again
//! (arming another replaces one not used yet). [`Fault::MutationDuringPagination`] waits
//! for the next `/transactions/sync` call in the middle of a loop (its cursor came with
//! `has_more: true`), so a loop's first page succeeds, a later page fails, and the restart
//! from the first page's cursor succeeds; it never fires for a loop of one page.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use poem::{
    EndpointExt, Request, Response, Route, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::Data,
};
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use serde::Serialize;
use serde_json::{Value, json, value::RawValue};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

/// The `PLAID-CLIENT-ID` the stand-in requires.
pub const CLIENT_ID: &str = "testkit-plaid-client-id";
/// The `PLAID-SECRET` the stand-in requires (a test value; tests check it never appears
/// where it should not, such as a request body or an error message).
pub const SECRET: &str = "testkit-plaid-secret-0123456789";
/// The `Plaid-Version` the stand-in requires.
pub const API_VERSION: &str = "2020-09-14";

/// How long a link token lives, as at Plaid.
const LINK_TOKEN_LIFETIME_SECS: i64 = 4 * 60 * 60;

/// A failure for the next call; see the module doc for which call takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 400 `TRANSACTIONS_ERROR` / `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`, once, for
    /// the next `/transactions/sync` call whose cursor is not a loop's first.
    MutationDuringPagination,
    /// 400 `ITEM_ERROR` / `ITEM_LOGIN_REQUIRED` (the body of Plaid's example).
    ItemLoginRequired,
    /// 400 `ITEM_ERROR` / `ITEM_NOT_FOUND`.
    ItemNotFound,
    /// 429 `RATE_LIMIT_EXCEEDED` / `RATE_LIMIT_EXCEEDED`.
    RateLimited,
    /// 500 `API_ERROR` / `INTERNAL_SERVER_ERROR`.
    ServerError,
    /// 200 with a JSON body that is not the endpoint's shape.
    Malformed,
    /// Sleeps this long, then answers normally (for client timeouts).
    Slow(Duration),
}

/// A transaction as a test gives it, in Plaid's terms: `amount` is the JSON number literal
/// to write (positive: money out), dates are `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaidTx {
    pub transaction_id: String,
    pub account_id: String,
    /// Written verbatim as a JSON number: `"72.10"` → `72.10`.
    pub amount: String,
    /// `None` with [`PlaidTx::unofficial_currency_code`] set, as Plaid does for crypto.
    pub iso_currency_code: Option<String>,
    pub unofficial_currency_code: Option<String>,
    pub date: String,
    pub authorized_date: Option<String>,
    pub pending: bool,
    pub pending_transaction_id: Option<String>,
    pub name: String,
    pub merchant_name: Option<String>,
    /// `personal_finance_category.primary`, e.g. `FOOD_AND_DRINK`.
    pub category: Option<String>,
}

impl PlaidTx {
    /// A posted USD transaction with no merchant, category or authorisation date.
    pub fn new(
        transaction_id: impl Into<String>,
        account_id: impl Into<String>,
        amount: impl Into<String>,
        date: impl Into<String>,
        name: impl Into<String>,
    ) -> PlaidTx {
        PlaidTx {
            transaction_id: transaction_id.into(),
            account_id: account_id.into(),
            amount: amount.into(),
            iso_currency_code: Some("USD".to_string()),
            unofficial_currency_code: None,
            date: date.into(),
            authorized_date: None,
            pending: false,
            pending_transaction_id: None,
            name: name.into(),
            merchant_name: None,
            category: None,
        }
    }

    /// Marks it pending.
    pub fn pending(mut self) -> PlaidTx {
        self.pending = true;
        self
    }

    /// A posted transaction replacing the pending one `pending_id`.
    pub fn replacing(mut self, pending_id: impl Into<String>) -> PlaidTx {
        self.pending = false;
        self.pending_transaction_id = Some(pending_id.into());
        self
    }

    pub fn merchant(mut self, merchant: impl Into<String>) -> PlaidTx {
        self.merchant_name = Some(merchant.into());
        self
    }

    pub fn authorized(mut self, date: impl Into<String>) -> PlaidTx {
        self.authorized_date = Some(date.into());
        self
    }

    pub fn category(mut self, primary: impl Into<String>) -> PlaidTx {
        self.category = Some(primary.into());
        self
    }

    /// An ISO 4217 currency other than USD.
    pub fn currency(mut self, code: impl Into<String>) -> PlaidTx {
        self.iso_currency_code = Some(code.into());
        self.unofficial_currency_code = None;
        self
    }

    /// An unofficial currency (`iso_currency_code: null`), e.g. `BTC`.
    pub fn unofficial(mut self, code: impl Into<String>) -> PlaidTx {
        self.iso_currency_code = None;
        self.unofficial_currency_code = Some(code.into());
        self
    }
}

/// An account as a test gives it; balances are JSON number literals in Plaid's sign (for a
/// card or a loan, a positive `current` is what is owed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaidAccount {
    pub account_id: String,
    pub name: String,
    pub official_name: Option<String>,
    pub mask: Option<String>,
    /// `depository`, `credit`, `loan`, `investment`, `other`.
    pub kind: String,
    pub subtype: Option<String>,
    pub iso_currency_code: Option<String>,
    pub unofficial_currency_code: Option<String>,
    pub current: Option<String>,
    pub available: Option<String>,
    pub limit: Option<String>,
}

impl PlaidAccount {
    /// A USD account of `kind`/`subtype` with a fresh id, mask `0000` and no balances.
    pub fn new(name: impl Into<String>, kind: impl Into<String>, subtype: &str) -> PlaidAccount {
        PlaidAccount {
            account_id: plaid_id(),
            name: name.into(),
            official_name: None,
            mask: Some("0000".to_string()),
            kind: kind.into(),
            subtype: Some(subtype.to_string()),
            iso_currency_code: Some("USD".to_string()),
            unofficial_currency_code: None,
            current: None,
            available: None,
            limit: None,
        }
    }

    fn checking() -> PlaidAccount {
        PlaidAccount {
            official_name: Some("Plaid Gold Standard 0% Interest Checking".to_string()),
            current: Some("1200.50".to_string()),
            available: Some("1100.50".to_string()),
            ..PlaidAccount::new("Plaid Checking", "depository", "checking")
        }
    }

    fn credit_card() -> PlaidAccount {
        PlaidAccount {
            official_name: Some("Plaid Diamond 12.5% APR Interest Credit Card".to_string()),
            mask: Some("3333".to_string()),
            current: Some("410.00".to_string()),
            available: Some("1590.00".to_string()),
            limit: Some("2000.00".to_string()),
            ..PlaidAccount::new("Plaid Credit Card", "credit", "credit card")
        }
    }
}

/// A `/link/token/create` call the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTokenRecord {
    pub link_token: String,
    /// An `access_token` was given: the token repairs that item.
    pub update_mode: bool,
    pub access_token: Option<String>,
    pub client_user_id: String,
    pub webhook: Option<String>,
    pub products: Vec<String>,
}

#[derive(Debug, Clone)]
enum Change {
    Added(PlaidTx),
    Modified(PlaidTx),
    Removed {
        transaction_id: String,
        account_id: Option<String>,
    },
}

struct Item {
    item_id: String,
    access_token: String,
    accounts: Vec<PlaidAccount>,
    log: Vec<Change>,
    webhook: Option<String>,
    /// `/item/remove` was called: the token now answers `ITEM_NOT_FOUND`.
    removed: bool,
    /// `/transactions/sync` answers `NOT_READY` with an empty cursor.
    not_ready: bool,
}

/// The webhook key's public half, as `/webhook_verification_key/get` shows it.
#[derive(Clone)]
struct PublicKey {
    kid: String,
    x: String,
    y: String,
    created_at: i64,
    expired_at: Option<i64>,
}

struct State {
    /// Keyed by access token.
    items: HashMap<String, Item>,
    /// Unexchanged public token → access token.
    public_tokens: HashMap<String, String>,
    link_tokens: Vec<LinkTokenRecord>,
    fault: Option<Fault>,
    calls: HashMap<String, usize>,
    requests: Vec<(String, Value)>,
    key: PublicKey,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide the next assertion behind
    // a poison error: the state is plain data and stays usable.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running stand-in; stops when dropped.
pub struct PlaidStandIn {
    addr: SocketAddr,
    state: Shared,
    signer: Arc<EcdsaKeyPair>,
    task: JoinHandle<()>,
}

impl Drop for PlaidStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PlaidStandIn {
    /// Listens on a free loopback port with no items and a fresh webhook key.
    pub async fn start() -> std::io::Result<PlaidStandIn> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| std::io::Error::other("the listener has no TCP address"))?;
        let signer = Arc::new(generate_key());
        let point = signer.public_key().as_ref();
        let key = PublicKey {
            kid: uuid::Uuid::now_v7().to_string(),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
            created_at: now(),
            expired_at: None,
        };
        let state: Shared = Arc::new(Mutex::new(State {
            items: HashMap::new(),
            public_tokens: HashMap::new(),
            link_tokens: Vec::new(),
            fault: None,
            calls: HashMap::new(),
            requests: Vec::new(),
            key,
        }));
        let app = Route::new()
            .at("/*path", post(dispatch))
            .data(state.clone());
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Ok(PlaidStandIn {
            addr,
            state,
            signer,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`, the form `BALANCE_PLAID_BASE_URL` takes (paths such as
    /// `/transactions/sync` are appended).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new item with the two default accounts; returns its single-use public token (what
    /// Link would hand the front end).
    pub fn create_item(&self) -> String {
        create_item(&mut lock(&self.state), None)
    }

    /// A new item with these accounts instead of the default two; returns its public token.
    pub fn create_item_with(&self, accounts: Vec<PlaidAccount>) -> String {
        let mut state = lock(&self.state);
        let public = create_item(&mut state, None);
        let access = state.public_tokens[&public].clone();
        if let Some(item) = state.items.get_mut(&access) {
            item.accounts = accounts;
        }
        public
    }

    /// The `item_id` of the item with this access token (or this public token, before or
    /// after its exchange). Panics for an unknown token: a test bug.
    pub fn item_id_of(&self, token: &str) -> String {
        let state = lock(&self.state);
        let access = state.public_tokens.get(token).map_or(token, String::as_str);
        match state.items.get(access) {
            Some(item) => item.item_id.clone(),
            None => panic!("the Plaid stand-in has no item for that token"),
        }
    }

    /// The item's account ids, in order: by default the checking account, then the card.
    pub fn account_ids(&self, item: &str) -> Vec<String> {
        self.with_item(item, |item| {
            item.accounts.iter().map(|a| a.account_id.clone()).collect()
        })
    }

    /// Adds an account to the item.
    pub fn add_account(&self, item: &str, account: PlaidAccount) {
        for literal in [&account.current, &account.available, &account.limit]
            .into_iter()
            .flatten()
        {
            number(literal);
        }
        self.with_item(item, |item| item.accounts.push(account));
    }

    /// Appends an `added` change. `item` is an access token, a public token or an item id.
    /// Panics when the amount is not a JSON number literal.
    pub fn add(&self, item: &str, tx: PlaidTx) {
        number(&tx.amount);
        self.with_item(item, |item| item.log.push(Change::Added(tx)));
    }

    /// Appends a `modified` change (the whole transaction as it now is).
    pub fn modify(&self, item: &str, tx: PlaidTx) {
        number(&tx.amount);
        self.with_item(item, |item| item.log.push(Change::Modified(tx)));
    }

    /// Appends a `removed` change; its `account_id` is the one the transaction was logged
    /// with (`null` for an id never logged).
    pub fn remove(&self, item: &str, transaction_id: &str) {
        self.with_item(item, |item| {
            let account_id = item.log.iter().rev().find_map(|c| match c {
                Change::Added(t) | Change::Modified(t) if t.transaction_id == transaction_id => {
                    Some(t.account_id.clone())
                }
                _ => None,
            });
            item.log.push(Change::Removed {
                transaction_id: transaction_id.to_string(),
                account_id,
            });
        });
    }

    /// Sets an account's `balances.current` (a JSON number literal, Plaid's sign).
    pub fn set_balance(&self, item: &str, account_id: &str, literal: &str) {
        number(literal);
        self.with_item(item, |item| {
            let account = item
                .accounts
                .iter_mut()
                .find(|a| a.account_id == account_id)
                .expect("the Plaid stand-in has no such account on that item");
            account.current = Some(literal.to_string());
        });
    }

    /// While set, `/transactions/sync` for the item answers an empty page with
    /// `next_cursor: ""` and `transactions_update_status: NOT_READY`, as Plaid does before
    /// its first extraction.
    pub fn set_not_ready(&self, item: &str, not_ready: bool) {
        self.with_item(item, |item| item.not_ready = not_ready);
    }

    /// Arms `fault` for the next call (see the module doc); replaces one not used yet.
    pub fn fail_next(&self, fault: Fault) {
        lock(&self.state).fault = Some(fault);
    }

    /// Whether an armed fault has not been used yet.
    pub fn fault_pending(&self) -> bool {
        lock(&self.state).fault.is_some()
    }

    /// How many requests reached `path` (e.g. `/transactions/sync`), however answered.
    pub fn calls(&self, path: &str) -> usize {
        lock(&self.state).calls.get(path).copied().unwrap_or(0)
    }

    /// Every JSON body received on `path`, oldest first, however answered.
    pub fn requests(&self, path: &str) -> Vec<Value> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Every link token handed out, oldest first.
    pub fn link_tokens(&self) -> Vec<LinkTokenRecord> {
        lock(&self.state).link_tokens.clone()
    }

    /// The `kid` of the webhook key.
    pub fn webhook_kid(&self) -> String {
        lock(&self.state).key.kid.clone()
    }

    /// Sets the webhook key's `expired_at` (Unix seconds), as Plaid does on rotation.
    pub fn expire_webhook_key(&self, expired_at: i64) {
        lock(&self.state).key.expired_at = Some(expired_at);
    }

    /// A `Plaid-Verification` header value for `body`, issued now.
    pub fn sign_webhook(&self, body: &[u8]) -> String {
        self.sign_webhook_at(body, now())
    }

    /// A `Plaid-Verification` header value for `body` with this `iat` (Unix seconds).
    pub fn sign_webhook_at(&self, body: &[u8], iat: i64) -> String {
        let header = json!({ "alg": "ES256", "kid": self.webhook_kid(), "typ": "JWT" });
        self.sign_webhook_with(&header, &claims(body, iat))
    }

    /// A JWT of these exact header and claims, signed with the webhook key: for wrong
    /// `alg`s, unknown `kid`s and odd claims.
    pub fn sign_webhook_with(&self, header: &Value, claims: &Value) -> String {
        sign_jwt(&self.signer, header, claims)
    }

    /// A JWT that names the stand-in's `kid` and claims `body`'s hash, but is signed by
    /// another key: a forgery.
    pub fn forge_webhook(&self, body: &[u8]) -> String {
        let header = json!({ "alg": "ES256", "kid": self.webhook_kid(), "typ": "JWT" });
        sign_jwt(&generate_key(), &header, &claims(body, now()))
    }

    /// Plaid's `TRANSACTIONS` / `SYNC_UPDATES_AVAILABLE` webhook body for `item_id`,
    /// pretty-printed as Plaid sends it (whitespace matters to the body hash).
    pub fn sync_updates_available_body(&self, item_id: &str) -> Vec<u8> {
        pretty(&json!({
            "webhook_type": "TRANSACTIONS",
            "webhook_code": "SYNC_UPDATES_AVAILABLE",
            "item_id": item_id,
            "initial_update_complete": true,
            "historical_update_complete": true,
            "environment": "sandbox",
        }))
    }

    /// Plaid's `ITEM` / `ERROR` webhook body for `item_id` with `error_code`.
    pub fn item_error_body(&self, item_id: &str, error_code: &str) -> Vec<u8> {
        pretty(&json!({
            "webhook_type": "ITEM",
            "webhook_code": "ERROR",
            "item_id": item_id,
            "error": {
                "error_type": "ITEM_ERROR",
                "error_code": error_code,
                "error_code_reason": null,
                "error_message": "the login details of this item have changed (credentials, MFA, \
                                  or required user action) and a user login is required to \
                                  update this information. use Link's update mode to \
                                  restore the item to a good state",
                "display_message": "The login details of this item have changed.",
                "request_id": request_id(),
                "causes": [],
                "status": 400,
                "documentation_url": null,
                "suggested_action": null,
            },
            "environment": "sandbox",
        }))
    }

    fn with_item<T>(&self, key: &str, f: impl FnOnce(&mut Item) -> T) -> T {
        let mut state = lock(&self.state);
        let access = state
            .public_tokens
            .get(key)
            .cloned()
            .or_else(|| {
                state
                    .items
                    .values()
                    .find(|i| i.item_id == key || i.access_token == key)
                    .map(|i| i.access_token.clone())
            })
            .expect("the Plaid stand-in has no item for that token or id");
        let item = state.items.get_mut(&access).expect("an item by its token");
        f(item)
    }
}

fn create_item(state: &mut State, webhook: Option<String>) -> String {
    let access_token = format!("access-sandbox-{}", uuid::Uuid::now_v7());
    let public_token = format!("public-sandbox-{}", uuid::Uuid::now_v7());
    state.items.insert(
        access_token.clone(),
        Item {
            item_id: plaid_id(),
            access_token: access_token.clone(),
            accounts: vec![PlaidAccount::checking(), PlaidAccount::credit_card()],
            log: Vec::new(),
            webhook,
            removed: false,
            not_ready: false,
        },
    );
    state
        .public_tokens
        .insert(public_token.clone(), access_token);
    public_token
}

fn generate_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("a P-256 key generates");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("a generated key parses")
}

fn claims(body: &[u8], iat: i64) -> Value {
    let hash = kernel::hex::encode(Sha256::digest(body).as_slice());
    json!({ "iat": iat, "request_body_sha256": hash })
}

fn sign_jwt(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(&SystemRandom::new(), signed.as_bytes())
        .expect("ECDSA signs");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

fn pretty(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("JSON serialises")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A Plaid-looking id: 37 characters of base62-ish text.
fn plaid_id() -> String {
    let a = uuid::Uuid::now_v7().simple().to_string();
    let b = uuid::Uuid::now_v7().simple().to_string();
    format!("{a}{b}").chars().rev().take(37).collect()
}

fn request_id() -> String {
    uuid::Uuid::now_v7()
        .simple()
        .to_string()
        .chars()
        .rev()
        .take(15)
        .collect()
}

/// `literal` as a JSON number to write verbatim; panics when it is not one (a test bug).
fn number(literal: &str) -> Box<RawValue> {
    let ok = literal
        .bytes()
        .next()
        .is_some_and(|b| b == b'-' || b.is_ascii_digit());
    match RawValue::from_string(literal.to_string()) {
        Ok(raw) if ok => raw,
        _ => panic!("{literal:?} is not a JSON number literal"),
    }
}

/// Unix seconds as RFC 3339 UTC (`2020-03-27T12:56:34Z`).
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------------------

struct Cursor {
    item_id: String,
    position: usize,
    /// Handed out with `has_more: true`: the loop is not over.
    mid_loop: bool,
}

fn encode_cursor(item_id: &str, position: usize, mid_loop: bool) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{item_id}|{position}|{}", u8::from(mid_loop)))
}

fn decode_cursor(cursor: &str) -> Option<Cursor> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let mut parts = text.split('|');
    let (Some("v1"), Some(item_id), Some(position), Some(mid), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some(Cursor {
        item_id: item_id.to_string(),
        position: position.parse().ok()?,
        mid_loop: mid == "1",
    })
}

// ---------------------------------------------------------------------------------------
// Wire shapes (Serialize, so amounts can be RawValue literals)
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct WireBalances {
    available: Option<Box<RawValue>>,
    current: Option<Box<RawValue>>,
    iso_currency_code: Option<String>,
    limit: Option<Box<RawValue>>,
    unofficial_currency_code: Option<String>,
}

#[derive(Serialize)]
struct WireAccount {
    account_id: String,
    balances: WireBalances,
    mask: Option<String>,
    name: String,
    official_name: Option<String>,
    subtype: Option<String>,
    #[serde(rename = "type")]
    kind: String,
}

fn wire_account(a: &PlaidAccount) -> WireAccount {
    let raw = |l: &Option<String>| l.as_deref().map(number);
    WireAccount {
        account_id: a.account_id.clone(),
        balances: WireBalances {
            available: raw(&a.available),
            current: raw(&a.current),
            iso_currency_code: a.iso_currency_code.clone(),
            limit: raw(&a.limit),
            unofficial_currency_code: a.unofficial_currency_code.clone(),
        },
        mask: a.mask.clone(),
        name: a.name.clone(),
        official_name: a.official_name.clone(),
        subtype: a.subtype.clone(),
        kind: a.kind.clone(),
    }
}

#[derive(Serialize)]
struct WireTransaction {
    account_id: String,
    account_owner: Option<String>,
    amount: Box<RawValue>,
    iso_currency_code: Option<String>,
    unofficial_currency_code: Option<String>,
    check_number: Option<String>,
    counterparties: Vec<Value>,
    date: String,
    datetime: Option<String>,
    authorized_date: Option<String>,
    authorized_datetime: Option<String>,
    location: Value,
    name: String,
    merchant_name: Option<String>,
    merchant_entity_id: Option<String>,
    logo_url: Option<String>,
    website: Option<String>,
    payment_meta: Value,
    payment_channel: &'static str,
    pending: bool,
    pending_transaction_id: Option<String>,
    personal_finance_category: Value,
    transaction_id: String,
    transaction_code: Option<String>,
}

fn wire_transaction(t: &PlaidTx) -> WireTransaction {
    WireTransaction {
        account_id: t.account_id.clone(),
        account_owner: None,
        amount: number(&t.amount),
        iso_currency_code: t.iso_currency_code.clone(),
        unofficial_currency_code: t.unofficial_currency_code.clone(),
        check_number: None,
        counterparties: Vec::new(),
        date: t.date.clone(),
        datetime: None,
        authorized_date: t.authorized_date.clone(),
        authorized_datetime: None,
        location: json!({
            "address": null, "city": null, "region": null, "postal_code": null,
            "country": null, "lat": null, "lon": null, "store_number": null,
        }),
        name: t.name.clone(),
        merchant_name: t.merchant_name.clone(),
        merchant_entity_id: None,
        logo_url: None,
        website: None,
        payment_meta: json!({
            "by_order_of": null, "payee": null, "payer": null, "payment_method": null,
            "payment_processor": null, "ppd_id": null, "reason": null,
            "reference_number": null,
        }),
        payment_channel: "other",
        pending: t.pending,
        pending_transaction_id: t.pending_transaction_id.clone(),
        personal_finance_category: match &t.category {
            Some(primary) => json!({
                "primary": primary,
                "detailed": format!("{primary}_OTHER"),
                "confidence_level": "HIGH",
            }),
            None => Value::Null,
        },
        transaction_id: t.transaction_id.clone(),
        transaction_code: None,
    }
}

#[derive(Serialize)]
struct WireSyncPage {
    accounts: Vec<WireAccount>,
    added: Vec<WireTransaction>,
    modified: Vec<WireTransaction>,
    removed: Vec<Value>,
    next_cursor: String,
    has_more: bool,
    request_id: String,
    transactions_update_status: &'static str,
}

// ---------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------

fn ok_json(body: String) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(body)
}

fn ok(value: Value) -> Response {
    ok_json(value.to_string())
}

/// Plaid's error object (the shape of `fixtures/plaid/error_item_login_required.json`).
fn plaid_error(
    status: StatusCode,
    error_type: &str,
    error_code: &str,
    message: &str,
    display_message: Option<&str>,
) -> Response {
    let section = error_type
        .trim_end_matches("_ERROR")
        .to_lowercase()
        .replace('_', "-");
    let body = json!({
        "error_type": error_type,
        "error_code": error_code,
        "error_code_reason": null,
        "error_message": message,
        "display_message": display_message,
        "request_id": request_id(),
        "causes": [],
        "status": status.as_u16(),
        "documentation_url": format!(
            "https://plaid.com/docs/errors/{section}/#{}",
            error_code.to_lowercase()
        ),
        "suggested_action": null,
    });
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn invalid_field(message: &str) -> Response {
    plaid_error(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        "INVALID_FIELD",
        message,
        None,
    )
}

fn missing_field(field: &str) -> Response {
    plaid_error(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        "MISSING_FIELDS",
        &format!("the following required fields are missing: {field}"),
        None,
    )
}

fn item_not_found() -> Response {
    plaid_error(
        StatusCode::BAD_REQUEST,
        "ITEM_ERROR",
        "ITEM_NOT_FOUND",
        "The Item you requested cannot be found. This Item does not exist, has been \
         previously removed via /item/remove, or has had access removed by the user.",
        None,
    )
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::MutationDuringPagination => plaid_error(
            StatusCode::BAD_REQUEST,
            "TRANSACTIONS_ERROR",
            "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
            "Underlying transaction data changed since last page was fetched. Please \
             restart pagination from last update.",
            None,
        ),
        Fault::ItemLoginRequired => plaid_error(
            StatusCode::BAD_REQUEST,
            "ITEM_ERROR",
            "ITEM_LOGIN_REQUIRED",
            "The login credentials for this Item have changed.",
            Some("Please update your login credentials."),
        ),
        Fault::ItemNotFound => item_not_found(),
        Fault::RateLimited => plaid_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            "RATE_LIMIT_EXCEEDED",
            "rate limit exceeded for attempts to access this item. please try again later",
            None,
        ),
        Fault::ServerError => plaid_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "API_ERROR",
            "INTERNAL_SERVER_ERROR",
            "an unexpected error occurred",
            Some("An unexpected error occurred. Please try again later."),
        ),
        Fault::Malformed => ok(json!({
            "request_id": request_id(),
            "surprise": "this is not the shape of any Plaid answer",
            "amount": "not a number",
        })),
        // Answered normally after the pause; never turned into a response here.
        Fault::Slow(_) => ok(json!({})),
    }
}

/// Takes the armed fault if this call is the one it is for.
fn take_fault(state: &Shared, path: &str, request: &Value) -> Option<Fault> {
    let mut state = lock(state);
    let applies = match state.fault.as_ref()? {
        _ if path.starts_with("/sandbox/") => false,
        Fault::MutationDuringPagination => {
            path == "/transactions/sync"
                && request
                    .get("cursor")
                    .and_then(Value::as_str)
                    .and_then(decode_cursor)
                    .is_some_and(|c| c.mid_loop)
        }
        _ => true,
    };
    if applies { state.fault.take() } else { None }
}

#[handler]
async fn dispatch(req: &Request, body: Vec<u8>, state: Data<&Shared>) -> Response {
    let path = req.uri().path().to_string();
    let request = serde_json::from_slice::<Value>(&body).ok();
    {
        let mut state = lock(&state);
        *state.calls.entry(path.clone()).or_default() += 1;
        if let Some(request) = &request {
            state.requests.push((path.clone(), request.clone()));
        }
    }

    let keys_ok = req.header("plaid-client-id") == Some(CLIENT_ID)
        && req.header("plaid-secret") == Some(SECRET);
    if !keys_ok {
        return plaid_error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "INVALID_API_KEYS",
            "invalid client_id or secret provided",
            None,
        );
    }
    if req.header("plaid-version") != Some(API_VERSION) {
        return plaid_error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "INVALID_HEADERS",
            "the stand-in speaks Plaid-Version 2020-09-14 only",
            None,
        );
    }
    let Some(request) = request.filter(Value::is_object) else {
        return plaid_error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "INVALID_BODY",
            "body could not be parsed as JSON",
            None,
        );
    };

    match take_fault(&state, &path, &request) {
        Some(Fault::Slow(pause)) => tokio::time::sleep(pause).await,
        Some(fault) => return fault_response(&fault),
        None => {}
    }

    let mut state = lock(&state);
    match path.as_str() {
        "/sandbox/public_token/create" => {
            let webhook = request
                .pointer("/options/webhook")
                .and_then(Value::as_str)
                .map(str::to_string);
            let public_token = create_item(&mut state, webhook);
            ok(json!({ "public_token": public_token, "request_id": request_id() }))
        }
        "/link/token/create" => link_token_create(&mut state, &request),
        "/item/public_token/exchange" => {
            let Some(public) = request.get("public_token").and_then(Value::as_str) else {
                return missing_field("public_token");
            };
            let Some(access_token) = state.public_tokens.remove(public) else {
                return plaid_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_INPUT",
                    "INVALID_PUBLIC_TOKEN",
                    "provided public token is expired or has already been exchanged",
                    None,
                );
            };
            let item_id = state.items[&access_token].item_id.clone();
            ok(json!({
                "access_token": access_token,
                "item_id": item_id,
                "request_id": request_id(),
            }))
        }
        "/accounts/get" => match item_of(&mut state, &request) {
            Ok(item) => {
                let accounts: Vec<WireAccount> = item.accounts.iter().map(wire_account).collect();
                let body = json!({
                    "accounts": accounts,
                    "item": {
                        "item_id": item.item_id,
                        "institution_id": "ins_109508",
                        "webhook": item.webhook,
                        "error": null,
                        "available_products": ["balance"],
                        "billed_products": ["transactions"],
                        "consent_expiration_time": null,
                        "update_type": "background",
                    },
                    "request_id": request_id(),
                });
                ok(body)
            }
            Err(no_item) => no_item.response(),
        },
        "/transactions/sync" => match item_of(&mut state, &request) {
            Ok(item) => transactions_sync(item, &request),
            Err(no_item) => no_item.response(),
        },
        "/item/remove" => match item_of(&mut state, &request) {
            Ok(item) => {
                item.removed = true;
                ok(json!({ "request_id": request_id() }))
            }
            Err(no_item) => no_item.response(),
        },
        "/webhook_verification_key/get" => {
            let Some(kid) = request.get("key_id").and_then(Value::as_str) else {
                return missing_field("key_id");
            };
            let key = &state.key;
            if kid != key.kid {
                return plaid_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_INPUT",
                    "INVALID_WEBHOOK_VERIFICATION_KEY_ID",
                    "invalid key_id provided. note that key_ids are specific to Plaid environments",
                    None,
                );
            }
            ok(json!({
                "key": {
                    "alg": "ES256",
                    "created_at": key.created_at,
                    "crv": "P-256",
                    "expired_at": key.expired_at,
                    "kid": key.kid,
                    "kty": "EC",
                    "use": "sig",
                    "x": key.x,
                    "y": key.y,
                },
                "request_id": request_id(),
            }))
        }
        _ => plaid_error(
            StatusCode::NOT_FOUND,
            "INVALID_REQUEST",
            "NOT_FOUND",
            "the Plaid stand-in does not serve this path",
            None,
        ),
    }
}

/// Why a request's `access_token` names no live item.
enum NoItem {
    Missing,
    Removed,
    Unknown,
}

impl NoItem {
    /// Plaid's error for it.
    fn response(&self) -> Response {
        match self {
            NoItem::Missing => missing_field("access_token"),
            NoItem::Removed => item_not_found(),
            NoItem::Unknown => plaid_error(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                "INVALID_ACCESS_TOKEN",
                "provided access token is in an invalid format. expected format: \
                 access-<environment>-<identifier>",
                None,
            ),
        }
    }
}

/// The live item of the request's `access_token`.
fn item_of<'a>(state: &'a mut State, request: &Value) -> Result<&'a mut Item, NoItem> {
    let token = request
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or(NoItem::Missing)?;
    match state.items.get_mut(token) {
        Some(item) if item.removed => Err(NoItem::Removed),
        Some(item) => Ok(item),
        None => Err(NoItem::Unknown),
    }
}

fn link_token_create(state: &mut State, request: &Value) -> Response {
    let text = |pointer: &str| request.pointer(pointer).and_then(Value::as_str);
    if text("/client_name").is_none_or(str::is_empty) {
        return missing_field("client_name");
    }
    if text("/language").is_none() {
        return missing_field("language");
    }
    if request
        .get("country_codes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return missing_field("country_codes");
    }
    let Some(client_user_id) = text("/user/client_user_id") else {
        return missing_field("user.client_user_id");
    };
    let products: Vec<String> = request
        .get("products")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let access_token = text("/access_token").map(str::to_string);
    match &access_token {
        Some(token) => {
            if !products.is_empty() {
                return invalid_field("products must be omitted in update mode");
            }
            match state.items.get(token) {
                Some(item) if item.removed => return NoItem::Removed.response(),
                Some(_) => {}
                None => return NoItem::Unknown.response(),
            }
        }
        None if products.is_empty() => return missing_field("products"),
        None => {}
    }
    let link_token = format!("link-sandbox-{}", uuid::Uuid::now_v7());
    state.link_tokens.push(LinkTokenRecord {
        link_token: link_token.clone(),
        update_mode: access_token.is_some(),
        access_token,
        client_user_id: client_user_id.to_string(),
        webhook: text("/webhook").map(str::to_string),
        products,
    });
    ok(json!({
        "link_token": link_token,
        "expiration": rfc3339(now() + LINK_TOKEN_LIFETIME_SECS),
        "request_id": request_id(),
    }))
}

fn transactions_sync(item: &mut Item, request: &Value) -> Response {
    let count = match request.get("count") {
        None | Some(Value::Null) => 100,
        Some(count) => match count.as_u64() {
            Some(n @ 1..=500) => usize::try_from(n).unwrap_or(500),
            _ => return invalid_field("count must be an integer from 1 to 500"),
        },
    };
    let position = match request.get("cursor") {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) if c.is_empty() => 0,
        Some(Value::String(c)) => match decode_cursor(c) {
            Some(cursor) if cursor.item_id == item.item_id && cursor.position <= item.log.len() => {
                cursor.position
            }
            _ => return invalid_field("cursor not valid"),
        },
        Some(_) => return invalid_field("cursor must be a string"),
    };
    let accounts: Vec<WireAccount> = item.accounts.iter().map(wire_account).collect();
    if item.not_ready {
        return page(WireSyncPage {
            accounts,
            added: Vec::new(),
            modified: Vec::new(),
            removed: Vec::new(),
            next_cursor: String::new(),
            has_more: false,
            request_id: request_id(),
            transactions_update_status: "NOT_READY",
        });
    }
    let end = (position + count).min(item.log.len());
    let (mut added, mut modified, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for change in &item.log[position..end] {
        match change {
            Change::Added(t) => added.push(wire_transaction(t)),
            Change::Modified(t) => modified.push(wire_transaction(t)),
            Change::Removed {
                transaction_id,
                account_id,
            } => removed.push(json!({
                "account_id": account_id,
                "transaction_id": transaction_id,
            })),
        }
    }
    let has_more = end < item.log.len();
    page(WireSyncPage {
        accounts,
        added,
        modified,
        removed,
        next_cursor: encode_cursor(&item.item_id, end, has_more),
        has_more,
        request_id: request_id(),
        transactions_update_status: "HISTORICAL_UPDATE_COMPLETE",
    })
}

fn page(page: WireSyncPage) -> Response {
    ok_json(serde_json::to_string(&page).expect("a sync page serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_unix_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_585_313_794), "2020-03-27T12:56:34Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = decode_cursor(&encode_cursor("item", 7, true)).unwrap();
        assert_eq!(
            (c.item_id.as_str(), c.position, c.mid_loop),
            ("item", 7, true)
        );
        assert!(
            !decode_cursor(&encode_cursor("item", 0, false))
                .unwrap()
                .mid_loop
        );
        assert!(decode_cursor("junk").is_none());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("v1|a|x|0")).is_none());
    }

    #[test]
    fn amounts_are_written_as_given() {
        let tx = PlaidTx::new("t", "a", "72.10", "2024-01-02", "X");
        let json = serde_json::to_string(&wire_transaction(&tx)).unwrap();
        assert!(json.contains(r#""amount":72.10,"#), "{json}");
        let json = serde_json::to_string(&wire_account(&PlaidAccount::checking())).unwrap();
        assert!(json.contains(r#""current":1200.50"#), "{json}");
    }

    #[test]
    #[should_panic(expected = "is not a JSON number literal")]
    fn a_literal_that_is_not_a_number_is_a_test_bug() {
        number("\"72.10\"");
    }
}
