//! Plaid: Link tokens, the public-token exchange, accounts, `/transactions/sync`, webhook
//! verification and `/item/remove`, as a [`Provider`].
//!
//! # Why hand-written
//!
//! INTEGRATIONS.md §2 (Plaid): the `plaid` crate (9.x) is 1,339 generated model files
//! on `httpclient` 0.21, which drags hyper 0.14, hyper-rustls 0.24 and http 0.2 in beside
//! our HTTP/TLS stack, and reads its base URL and keys from environment variables; `rplaid`
//! has no `/transactions/sync`. We need six endpoints, so this is reqwest 0.12 + serde:
//! every call is a `POST` of JSON with `PLAID-CLIENT-ID`, `PLAID-SECRET` and
//! `Plaid-Version: 2020-09-14` headers, to [`PlaidConfig::base_url`] (production, sandbox,
//! or the testkit stand-in).
//!
//! # Amounts
//!
//! Plaid writes amounts and balances as JSON numbers (`72.1`). They are read through
//! [`serde_json::value::RawValue`] and their literal text is turned into minor units by
//! [`minor_units`] with the currency's exponent from [`kernel::Currency`]: never an `f64`.
//! A literal with more decimals than the currency has is refused, not rounded.
//!
//! - Transactions: Plaid's `amount` is positive for money **out**; ours is negative for
//!   money out, so every transaction amount is negated.
//! - Balances: for `depository` (and `investment`, `other`) accounts a positive `current`
//!   is money held and keeps its sign. For `credit` and `loan` accounts Plaid's positive
//!   `current` is what is owed, so it is negated (a card with 410.00 owed is `-41000`).
//!   `available` is what can still be spent (for a card, the credit left) and keeps its
//!   sign for every kind.
//! - Unofficial currencies: a row whose `iso_currency_code` is `null` (Plaid then sets
//!   `unofficial_currency_code`, e.g. a crypto asset) gets `currency: None`, and its amount
//!   is read with **two** decimals, because there is no table to ask. The sync refuses such
//!   rows anyway (see [`ProviderTransaction::currency`]); if the literal has more than two
//!   decimals, the transaction's amount is set to `0` (with a warning) rather than failing
//!   the whole page, and such an account's balance is `None`.
//!
//! # Errors
//!
//! Plaid's error body `{error_type, error_code, error_message, ...}` is mapped by
//! [`parse_error`] to a [`ProviderError`]. Messages carry Plaid's code and its (capped)
//! `error_message`, never a request body; every secret the call used (the API secret, the
//! access or public token) is scrubbed out of them anyway, and a response that does not
//! parse is described by serde's category and position only, never by its content.
//!
//! # Webhooks
//!
//! [`Provider::verify_webhook`] follows Plaid's webhook verification
//! (plaid.com/docs/api/webhooks/webhook-verification): the `Plaid-Verification` header is
//! an ES256 JWT whose key is fetched from `/webhook_verification_key/get` by `kid` and
//! cached; its claims `{iat, request_body_sha256}` must be fresh (±5 minutes) and match the
//! SHA-256 of the raw body bytes, compared in constant time.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::future::BoxFuture;
use kernel::{Currency, Secret};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use sha2::{Digest, Sha256};

use crate::provider::{
    Exchanged, LinkRequest, LinkToken, Provider, ProviderAccount, ProviderError,
    ProviderTransaction, Removed, SyncPage, Webhook, WebhookEvent, minor_units,
};

/// Plaid's sandbox.
pub const SANDBOX_URL: &str = "https://sandbox.plaid.com";
/// Plaid's production environment.
pub const PRODUCTION_URL: &str = "https://production.plaid.com";
/// The API version every request pins (`Plaid-Version`); the shapes here are its shapes.
pub const API_VERSION: &str = "2020-09-14";
/// The most transactions `/transactions/sync` returns a call; larger counts are capped.
pub const MAX_SYNC_COUNT: u32 = 500;
/// How much history a new item asks for (Plaid's maximum, 24 months).
pub const LINK_DAYS_REQUESTED: u32 = 730;
/// How old (or how far in the future) a webhook's `iat` may be, in seconds.
pub const WEBHOOK_MAX_AGE_SECS: i64 = 5 * 60;
/// The header carrying a webhook's JWT (matched case-insensitively).
pub const VERIFICATION_HEADER: &str = "plaid-verification";

/// The exponent amounts without an ISO currency are read with (see the module doc).
const UNOFFICIAL_EXPONENT: u8 = 2;
/// The largest response body read: a sync page of 500 full transactions is about 1.5 MB.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The longest Plaid `error_message` kept in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 200;

/// Where Plaid is and who we are to it; built by the app from `BALANCE_PLAID_*` (modules
/// read no environment variables).
#[derive(Debug, Clone)]
pub struct PlaidConfig {
    /// [`SANDBOX_URL`], [`PRODUCTION_URL`] or a stand-in's URL; paths are appended to it.
    pub base_url: String,
    /// Sent as `PLAID-CLIENT-ID`.
    pub client_id: String,
    /// Sent as `PLAID-SECRET` (a sensitive header); prints as `***`.
    pub secret: Secret<String>,
    /// The name Link shows the person (`client_name`).
    pub client_name: String,
    /// `country_codes` for Link, e.g. `["US"]`.
    pub country_codes: Vec<String>,
    /// How long one call may take, connection to last byte.
    pub timeout: Duration,
}

impl PlaidConfig {
    /// The default for [`PlaidConfig::timeout`]. Plaid answers most calls in well under a
    /// second; `/transactions/sync` pages of 500 can take several.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// A configuration with `client_name` "Balance", `country_codes` `["US"]` and the
    /// default timeout.
    pub fn new(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        secret: Secret<String>,
    ) -> PlaidConfig {
        PlaidConfig {
            base_url: base_url.into(),
            client_id: client_id.into(),
            secret,
            client_name: "Balance".to_string(),
            country_codes: vec!["US".to_string()],
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// A webhook verification key as cached: the uncompressed P-256 point and when Plaid says
/// it expired.
#[derive(Debug, Clone)]
struct VerificationKey {
    /// `0x04 ‖ x ‖ y`, 65 bytes.
    point: Vec<u8>,
    /// Unix seconds; `None` while the key is current.
    expired_at: Option<i64>,
}

/// The Plaid client. Cheap to share behind an `Arc`; the connection pool and the webhook
/// key cache live inside.
#[derive(Debug)]
pub struct Plaid {
    http: reqwest::Client,
    config: PlaidConfig,
    keys: Mutex<HashMap<String, VerificationKey>>,
}

impl Plaid {
    /// A client for `config`. Nothing is checked until the first call: a base URL that does
    /// not make a URL fails each call with [`ProviderError::Refused`].
    pub fn new(config: PlaidConfig) -> Plaid {
        let http = reqwest::Client::builder()
            .user_agent(concat!("balance-banking/", env!("CARGO_PKG_VERSION")))
            // A POST API has no business redirecting, and a redirect would carry tokens
            // (and, same-origin, the secret) somewhere unplanned.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .build()
            // Only a TLS backend that fails to initialise gets here; reqwest's own
            // `Client::new` would panic the same way.
            .unwrap_or_else(|_| reqwest::Client::new());
        Plaid {
            http,
            config,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// POSTs `body` to `path` and returns a 2xx answer's bytes; anything else becomes a
    /// [`ProviderError`] with `secrets` (and the API secret) scrubbed out of its message.
    async fn call(
        &self,
        path: &str,
        body: &Value,
        secrets: &[&str],
    ) -> Result<Vec<u8>, ProviderError> {
        let result = self.call_unscrubbed(path, body).await;
        result.map_err(|e| {
            let mut all = Vec::with_capacity(secrets.len() + 1);
            all.push(self.config.secret.expose().as_str());
            all.extend_from_slice(secrets);
            scrub(e, &all)
        })
    }

    async fn call_unscrubbed(&self, path: &str, body: &Value) -> Result<Vec<u8>, ProviderError> {
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        let bytes = serde_json::to_vec(body)
            .map_err(|_| ProviderError::Refused("the request could not be encoded".into()))?;
        let client_id = HeaderValue::from_str(&self.config.client_id).map_err(|_| {
            ProviderError::Refused("the configured client id is not a valid header value".into())
        })?;
        let mut secret = HeaderValue::from_str(self.config.secret.expose()).map_err(|_| {
            ProviderError::Refused("the configured secret is not a valid header value".into())
        })?;
        // Keeps it out of reqwest's and hyper's own debug output.
        secret.set_sensitive(true);

        let response = self
            .http
            .post(url)
            .timeout(self.config.timeout)
            .header("PLAID-CLIENT-ID", client_id)
            .header("PLAID-SECRET", secret)
            .header("Plaid-Version", API_VERSION)
            .header(CONTENT_TYPE, "application/json")
            .body(bytes)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = read_capped(response).await?;
        tracing::debug!(
            path,
            status = status.as_u16(),
            bytes = body.len(),
            "plaid answered"
        );
        if status.is_success() {
            Ok(body)
        } else {
            Err(parse_error(status.as_u16(), &body))
        }
    }

    /// The verification key `kid`, from the cache or from Plaid. An unknown kid first
    /// refreshes the cached keys that are still current (so a rotation marks the old one
    /// expired, as Plaid's example does), then fetches the new one.
    async fn verification_key(&self, kid: &str) -> Result<VerificationKey, String> {
        let now = Utc::now().timestamp();
        let (cached, current) = {
            let keys = lock(&self.keys);
            let cached = keys.get(kid).cloned();
            let current: Vec<String> = keys
                .iter()
                .filter(|(_, k)| k.expired_at.is_none())
                .map(|(kid, _)| kid.clone())
                .collect();
            (cached, current)
        };
        let key = match cached {
            Some(key) => key,
            None => {
                for old in current {
                    if let Ok(key) = self.fetch_key(&old).await {
                        lock(&self.keys).insert(old, key);
                    }
                }
                let key = self.fetch_key(kid).await?;
                lock(&self.keys).insert(kid.to_string(), key.clone());
                key
            }
        };
        match key.expired_at {
            Some(at) if at <= now => Err(format!("the verification key {kid} expired at {at}")),
            _ => Ok(key),
        }
    }

    async fn fetch_key(&self, kid: &str) -> Result<VerificationKey, String> {
        let bytes = self
            .call(
                "/webhook_verification_key/get",
                &json!({ "key_id": kid }),
                &[],
            )
            .await
            .map_err(|e| format!("could not fetch the verification key {kid}: {e}"))?;
        let response: WireKeyResponse = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the verification key does not parse ({})", describe(&e)))?;
        verification_key_from_jwk(&response.key, kid)
    }

    async fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<Webhook, String> {
        let token = headers
            .get(VERIFICATION_HEADER)
            .ok_or("no Plaid-Verification header")?
            .to_str()
            .map_err(|_| "the Plaid-Verification header is not ASCII")?;
        let jwt = Jwt::split(token)?;
        let header = jwt.header()?;
        let key = self.verification_key(&header.kid).await?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.point)
            .verify(jwt.signed.as_bytes(), &jwt.signature()?)
            .map_err(|_| "the signature does not verify")?;
        let claims = jwt.claims()?;
        check_claims(&claims, body, Utc::now().timestamp())?;
        parse_webhook_body(body)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The cache is plain data: a panic elsewhere must not disable webhooks.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Provider for Plaid {
    fn name(&self) -> &'static str {
        "plaid"
    }

    fn link_token<'a>(
        &'a self,
        request: &'a LinkRequest,
    ) -> BoxFuture<'a, Result<LinkToken, ProviderError>> {
        Box::pin(async move {
            let body = link_token_body(&self.config, request);
            let token = request.access_token.as_ref().map(|t| t.expose().as_str());
            let secrets: Vec<&str> = token.into_iter().collect();
            let bytes = self.call("/link/token/create", &body, &secrets).await?;
            let wire: WireLinkToken = decode("/link/token/create", &bytes)?;
            Ok(LinkToken {
                link_token: wire.link_token,
                expires_at: wire.expiration,
            })
        })
    }

    fn exchange<'a>(
        &'a self,
        public_token: &'a str,
    ) -> BoxFuture<'a, Result<Exchanged, ProviderError>> {
        Box::pin(async move {
            let body = json!({ "public_token": public_token });
            let bytes = self
                .call("/item/public_token/exchange", &body, &[public_token])
                .await?;
            let wire: WireExchange = decode("/item/public_token/exchange", &bytes)?;
            Ok(Exchanged {
                access_token: Secret::new(wire.access_token),
                item_id: wire.item_id,
                institution: None,
            })
        })
    }

    fn accounts<'a>(
        &'a self,
        access_token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<Vec<ProviderAccount>, ProviderError>> {
        Box::pin(async move {
            let token = access_token.expose().as_str();
            let body = json!({ "access_token": token });
            let bytes = self.call("/accounts/get", &body, &[token]).await?;
            let wire: WireAccounts = decode("/accounts/get", &bytes)?;
            wire.accounts.into_iter().map(account).collect()
        })
    }

    fn sync<'a>(
        &'a self,
        access_token: &'a Secret<String>,
        cursor: Option<&'a str>,
        count: u32,
    ) -> BoxFuture<'a, Result<SyncPage, ProviderError>> {
        Box::pin(async move {
            let token = access_token.expose().as_str();
            let body = sync_body(token, cursor, count);
            let bytes = self.call("/transactions/sync", &body, &[token]).await?;
            parse_sync_page(&bytes)
        })
    }

    fn verify_webhook<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Webhook, ProviderError>> {
        Box::pin(async move {
            self.verify(headers, body)
                .await
                .map_err(ProviderError::BadWebhook)
        })
    }

    fn disconnect<'a>(
        &'a self,
        access_token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let token = access_token.expose().as_str();
            let body = json!({ "access_token": token });
            self.call("/item/remove", &body, &[token]).await?;
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// The `/link/token/create` body. Update mode (an `access_token`) repairs an existing item,
/// so it names no products; a new link asks for transactions with 24 months of history.
fn link_token_body(config: &PlaidConfig, request: &LinkRequest) -> Value {
    let mut body = json!({
        "client_name": config.client_name,
        "language": "en",
        "country_codes": config.country_codes,
        "user": { "client_user_id": request.client_user_id },
    });
    if let Some(webhook) = &request.webhook {
        body["webhook"] = json!(webhook);
    }
    match &request.access_token {
        Some(token) => body["access_token"] = json!(token.expose()),
        None => {
            body["products"] = json!(["transactions"]);
            body["transactions"] = json!({ "days_requested": LINK_DAYS_REQUESTED });
        }
    }
    body
}

/// The `/transactions/sync` body: `count` within 1..=[`MAX_SYNC_COUNT`], no `cursor` for the
/// first call, and Plaid's personal finance category (our category hint).
fn sync_body(access_token: &str, cursor: Option<&str>, count: u32) -> Value {
    let mut body = json!({
        "access_token": access_token,
        "count": count.clamp(1, MAX_SYNC_COUNT),
        "options": { "include_personal_finance_category": true },
    });
    if let Some(cursor) = cursor {
        body["cursor"] = json!(cursor);
    }
    body
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct WireLinkToken {
    link_token: String,
    expiration: DateTime<Utc>,
}

#[derive(Deserialize)]
struct WireExchange {
    access_token: String,
    item_id: String,
}

#[derive(Deserialize)]
struct WireAccounts {
    accounts: Vec<WireAccount>,
}

#[derive(Deserialize)]
struct WireAccount {
    account_id: String,
    #[serde(default)]
    name: String,
    official_name: Option<String>,
    mask: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    #[serde(default)]
    balances: WireBalances,
}

#[derive(Deserialize, Default)]
struct WireBalances {
    #[serde(default)]
    available: Option<Box<RawValue>>,
    #[serde(default)]
    current: Option<Box<RawValue>>,
    #[serde(default)]
    iso_currency_code: Option<String>,
}

#[derive(Deserialize)]
struct WireTransaction {
    transaction_id: String,
    account_id: String,
    amount: Box<RawValue>,
    iso_currency_code: Option<String>,
    date: NaiveDate,
    #[serde(default)]
    authorized_date: Option<NaiveDate>,
    #[serde(default)]
    pending: bool,
    #[serde(default)]
    pending_transaction_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    merchant_name: Option<String>,
    #[serde(default)]
    personal_finance_category: Option<WireCategory>,
}

#[derive(Deserialize)]
struct WireCategory {
    primary: Option<String>,
}

#[derive(Deserialize)]
struct WireRemoved {
    transaction_id: String,
    #[serde(default)]
    account_id: Option<String>,
}

#[derive(Deserialize)]
struct WireSyncPage {
    #[serde(default)]
    accounts: Vec<WireAccount>,
    added: Vec<WireTransaction>,
    modified: Vec<WireTransaction>,
    removed: Vec<WireRemoved>,
    next_cursor: String,
    has_more: bool,
    #[serde(default)]
    transactions_update_status: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    error_type: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
}

/// Decodes a 2xx answer of `path`; a body that is not the shape is a refusal described by
/// serde's category and position only (the body may hold an access token).
fn decode<T: serde::de::DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ProviderError::Refused(format!(
            "the {path} answer does not parse ({})",
            describe(&e)
        ))
    })
}

/// A serde error without its message, which can quote the offending value.
fn describe(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "i/o",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "not the expected shape",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// One `/transactions/sync` answer as a [`SyncPage`]: amounts in minor units with Plaid's
/// sign inverted, balances in our sign (see the module doc). A body that is not the shape,
/// an unknown ISO currency, or an amount that is not a plain decimal with at most the
/// currency's decimals is [`ProviderError::Refused`].
pub fn parse_sync_page(body: &[u8]) -> Result<SyncPage, ProviderError> {
    let wire: WireSyncPage = decode("/transactions/sync", body)?;
    Ok(SyncPage {
        added: wire
            .added
            .into_iter()
            .map(transaction)
            .collect::<Result<_, _>>()?,
        modified: wire
            .modified
            .into_iter()
            .map(transaction)
            .collect::<Result<_, _>>()?,
        removed: wire
            .removed
            .into_iter()
            .map(|r| Removed {
                id: r.transaction_id,
                account_id: r.account_id,
            })
            .collect(),
        accounts: wire
            .accounts
            .into_iter()
            .map(account)
            .collect::<Result<_, _>>()?,
        next_cursor: wire.next_cursor,
        has_more: wire.has_more,
        history_complete: wire.transactions_update_status.as_deref()
            == Some("HISTORICAL_UPDATE_COMPLETE"),
    })
}

/// The ISO code and its exponent; no code: `None` and [`UNOFFICIAL_EXPONENT`].
fn currency_of(code: Option<&str>) -> Result<(Option<String>, u8), ProviderError> {
    match code {
        None => Ok((None, UNOFFICIAL_EXPONENT)),
        Some(code) => {
            let currency =
                Currency::parse(code).map_err(|e| ProviderError::Refused(e.to_string()))?;
            Ok((Some(currency.code().to_string()), currency.minor_units()))
        }
    }
}

fn transaction(wire: WireTransaction) -> Result<ProviderTransaction, ProviderError> {
    let (currency, exponent) = currency_of(wire.iso_currency_code.as_deref())?;
    let literal = wire.amount.get();
    let amount = match (minor_units(literal, exponent), &currency) {
        // Plaid: positive is money out. Ours: negative is money out.
        (Some(plaid), _) => plaid.checked_neg().ok_or_else(|| {
            ProviderError::Refused(format!(
                "transaction {}: the amount does not fit",
                wire.transaction_id
            ))
        })?,
        (None, Some(code)) => {
            return Err(ProviderError::Refused(format!(
                "transaction {}: the amount {} is not a {code} amount",
                wire.transaction_id,
                cap(literal, 40)
            )));
        }
        (None, None) => {
            tracing::warn!(
                transaction_id = %wire.transaction_id,
                "an unofficial-currency amount with more than two decimals; amount set to 0 \
                 (the row has no currency and is not booked)"
            );
            0
        }
    };
    Ok(ProviderTransaction {
        id: wire.transaction_id,
        account_id: wire.account_id,
        amount,
        currency,
        date: wire.date,
        authorized_date: wire.authorized_date,
        pending: wire.pending,
        pending_transaction_id: wire.pending_transaction_id,
        name: wire.name.unwrap_or_default(),
        merchant_name: wire.merchant_name,
        category_hint: wire.personal_finance_category.and_then(|c| c.primary),
    })
}

fn account(wire: WireAccount) -> Result<ProviderAccount, ProviderError> {
    let (currency, exponent) = currency_of(wire.balances.iso_currency_code.as_deref())?;
    // Plaid's `current` for a card or a loan is the debt, positive.
    let owed = matches!(wire.kind.as_str(), "credit" | "loan");
    let balance =
        |raw: &Option<Box<RawValue>>, negate: bool| -> Result<Option<i64>, ProviderError> {
            let Some(raw) = raw else { return Ok(None) };
            match minor_units(raw.get(), exponent) {
                Some(v) => Ok(Some(if negate { -v } else { v })),
                // An unofficial currency read with two decimals that has more: unknown.
                None if currency.is_none() => Ok(None),
                None => Err(ProviderError::Refused(format!(
                    "account {}: the balance {} is not a {} amount",
                    wire.account_id,
                    cap(raw.get(), 40),
                    currency.as_deref().unwrap_or_default()
                ))),
            }
        };
    let current_balance = balance(&wire.balances.current, owed)?;
    let available_balance = balance(&wire.balances.available, false)?;
    Ok(ProviderAccount {
        id: wire.account_id,
        name: wire.name,
        official_name: wire.official_name,
        mask: wire.mask,
        kind: wire.kind,
        subtype: wire.subtype,
        currency,
        current_balance,
        available_balance,
    })
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Plaid's error answer (HTTP `status`, its `{error_type, error_code, error_message, ...}`
/// body) as a [`ProviderError`]:
///
/// - `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`:
///   [`ProviderError::MutationDuringPagination`];
/// - `ITEM_LOGIN_REQUIRED`, `PENDING_EXPIRATION`, `PENDING_DISCONNECT`:
///   [`ProviderError::NeedsReauth`];
/// - `ITEM_NOT_FOUND`, `INVALID_ACCESS_TOKEN`, `USER_PERMISSION_REVOKED`:
///   [`ProviderError::Ended`];
/// - `RATE_LIMIT_EXCEEDED` (as code or `error_type`), or HTTP 429: [`ProviderError::RateLimited`];
/// - `INSTITUTION_DOWN`, `INSTITUTION_NOT_RESPONDING`, `INTERNAL_SERVER_ERROR`,
///   `PLANNED_MAINTENANCE`, or any 5xx: [`ProviderError::Unavailable`];
/// - any other code, and a body that is not Plaid's error: [`ProviderError::Refused`].
pub fn parse_error(status: u16, body: &[u8]) -> ProviderError {
    let server = (500..600).contains(&status);
    let wire = serde_json::from_slice::<WireError>(body).ok();
    let Some((code, kind, message)) = wire.and_then(|w| {
        let code = w.error_code.filter(|c| !c.is_empty())?;
        Some((
            code,
            w.error_type.unwrap_or_default(),
            w.error_message.unwrap_or_default(),
        ))
    }) else {
        return if status == 429 {
            ProviderError::RateLimited
        } else if server {
            ProviderError::Unavailable(format!("HTTP {status}"))
        } else {
            ProviderError::Refused(format!("HTTP {status} without a Plaid error body"))
        };
    };
    let message = cap(&message, MAX_MESSAGE_CHARS);
    match code.as_str() {
        "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION" => ProviderError::MutationDuringPagination,
        "ITEM_LOGIN_REQUIRED" | "PENDING_EXPIRATION" | "PENDING_DISCONNECT" => {
            ProviderError::NeedsReauth { code, message }
        }
        "ITEM_NOT_FOUND" | "INVALID_ACCESS_TOKEN" | "USER_PERMISSION_REVOKED" => {
            ProviderError::Ended { code, message }
        }
        "RATE_LIMIT_EXCEEDED" => ProviderError::RateLimited,
        _ if kind == "RATE_LIMIT_EXCEEDED" || status == 429 => ProviderError::RateLimited,
        "INSTITUTION_DOWN"
        | "INSTITUTION_NOT_RESPONDING"
        | "INTERNAL_SERVER_ERROR"
        | "PLANNED_MAINTENANCE" => ProviderError::Unavailable(format!("{code}: {message}")),
        _ if server => ProviderError::Unavailable(format!("{code}: {message}")),
        _ => ProviderError::Refused(format!("{code}: {message}")),
    }
}

/// A transport failure: worth retrying unless the request could not even be built.
fn transport(e: reqwest::Error) -> ProviderError {
    // Fixed texts: reqwest's own would be harmless (our URLs carry no secrets), but these
    // are all the sync needs and say nothing more than they must.
    if e.is_builder() {
        ProviderError::Refused("the request could not be built (check the base URL)".into())
    } else if e.is_timeout() {
        ProviderError::Unavailable("timed out".into())
    } else if e.is_connect() {
        ProviderError::Unavailable("could not connect".into())
    } else if e.is_body() || e.is_decode() {
        ProviderError::Unavailable("the answer broke off".into())
    } else {
        ProviderError::Unavailable("the request failed in transit".into())
    }
}

/// Reads the body up to [`MAX_BODY_BYTES`], under the request's timeout.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ProviderError::Refused(format!(
                "the answer is over {MAX_BODY_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// `text` cut to `max` characters.
fn cap(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Replaces every non-empty `secrets` value in the error's texts with `***`.
fn scrub(error: ProviderError, secrets: &[&str]) -> ProviderError {
    let clean = |mut text: String| {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            if text.contains(secret) {
                text = text.replace(secret, "***");
            }
        }
        text
    };
    match error {
        ProviderError::NeedsReauth { code, message } => ProviderError::NeedsReauth {
            code: clean(code),
            message: clean(message),
        },
        ProviderError::Ended { code, message } => ProviderError::Ended {
            code: clean(code),
            message: clean(message),
        },
        ProviderError::Unavailable(m) => ProviderError::Unavailable(clean(m)),
        ProviderError::Refused(m) => ProviderError::Refused(clean(m)),
        ProviderError::BadWebhook(m) => ProviderError::BadWebhook(clean(m)),
        other @ (ProviderError::MutationDuringPagination | ProviderError::RateLimited) => other,
    }
}

// ---------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct WireKeyResponse {
    key: WireJwk,
}

#[derive(Deserialize)]
struct WireJwk {
    #[serde(default)]
    alg: Option<String>,
    crv: String,
    kid: String,
    kty: String,
    x: String,
    y: String,
    #[serde(default)]
    expired_at: Option<i64>,
}

/// A JWK from `/webhook_verification_key/get` as a P-256 point, checked to be the key
/// asked for and an ES256 one.
fn verification_key_from_jwk(jwk: &WireJwk, kid: &str) -> Result<VerificationKey, String> {
    if jwk.kid != kid {
        return Err(format!("asked for key {kid}, got another"));
    }
    if jwk.kty != "EC" || jwk.crv != "P-256" || jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
        return Err(format!(
            "the verification key {kid} is not an ES256 P-256 key"
        ));
    }
    let coordinate = |c: &str| {
        URL_SAFE_NO_PAD
            .decode(c.trim_end_matches('='))
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("the verification key {kid} has a bad coordinate"))
    };
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend(coordinate(&jwk.x)?);
    point.extend(coordinate(&jwk.y)?);
    Ok(VerificationKey {
        point,
        expired_at: jwk.expired_at,
    })
}

/// A compact JWS in its three parts.
struct Jwt<'a> {
    /// `header_b64.payload_b64`, what the signature covers.
    signed: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
    kid: String,
}

#[derive(Deserialize)]
struct JwtClaims {
    iat: i64,
    request_body_sha256: String,
}

impl<'a> Jwt<'a> {
    fn split(token: &'a str) -> Result<Jwt<'a>, String> {
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the Plaid-Verification header is not a JWT".into());
        };
        let signed = &token[..header.len() + 1 + payload.len()];
        Ok(Jwt {
            signed,
            header,
            payload,
            signature,
        })
    }

    /// The header, read before anything is verified: it must say ES256 and name a key.
    fn header(&self) -> Result<JwtHeader, String> {
        let bytes = b64(self.header, "header")?;
        let header: JwtHeader = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the JWT header does not parse ({})", describe(&e)))?;
        if header.alg != "ES256" {
            return Err(format!(
                "the JWT's alg is {}, not ES256",
                cap(&header.alg, 16)
            ));
        }
        if header.kid.is_empty() {
            return Err("the JWT names no key".into());
        }
        Ok(header)
    }

    fn signature(&self) -> Result<Vec<u8>, String> {
        b64(self.signature, "signature")
    }

    fn claims(&self) -> Result<JwtClaims, String> {
        let bytes = b64(self.payload, "payload")?;
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("the JWT claims do not parse ({})", describe(&e)))
    }
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| format!("the JWT {what} is not base64url"))
}

/// The claims are fresh (`iat` within [`WEBHOOK_MAX_AGE_SECS`] of `now`, either way) and
/// the body is the one signed (its hex SHA-256, compared in constant time).
fn check_claims(claims: &JwtClaims, body: &[u8], now: i64) -> Result<(), String> {
    let age = now.saturating_sub(claims.iat);
    if age > WEBHOOK_MAX_AGE_SECS {
        return Err(format!("the webhook is stale ({age} s old)"));
    }
    if age < -WEBHOOK_MAX_AGE_SECS {
        return Err(format!("the webhook is from the future ({} s ahead)", -age));
    }
    let digest = kernel::hex::encode(Sha256::digest(body).as_slice());
    let claimed = claims.request_body_sha256.to_ascii_lowercase();
    if !constant_time_eq(digest.as_bytes(), claimed.as_bytes()) {
        return Err("the body does not match its signed hash".into());
    }
    Ok(())
}

/// Equality whose time depends only on the lengths (which are public: a hex SHA-256).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[derive(Deserialize)]
struct WireWebhook {
    webhook_type: String,
    webhook_code: String,
    #[serde(default)]
    item_id: Option<String>,
    #[serde(default)]
    error: Option<WireWebhookError>,
}

#[derive(Deserialize)]
struct WireWebhookError {
    #[serde(default)]
    error_code: Option<String>,
}

/// What a verified webhook is about. `TRANSACTIONS`/`SYNC_UPDATES_AVAILABLE` and
/// `ITEM`/`ERROR` (with an `error.error_code`) need an `item_id`; everything else (the
/// legacy `INITIAL_UPDATE`, `HISTORICAL_UPDATE`, `DEFAULT_UPDATE`, `TRANSACTIONS_REMOVED`
/// among them) is [`WebhookEvent::Ignored`], with an empty `item_id` when it has none.
fn parse_webhook_body(body: &[u8]) -> Result<Webhook, String> {
    let wire: WireWebhook = serde_json::from_slice(body)
        .map_err(|e| format!("the webhook body does not parse ({})", describe(&e)))?;
    let item_error = wire.error.and_then(|e| e.error_code);
    let event = match (
        wire.webhook_type.as_str(),
        wire.webhook_code.as_str(),
        item_error,
    ) {
        ("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE", _) => WebhookEvent::SyncUpdatesAvailable,
        ("ITEM", "ERROR", Some(code)) => WebhookEvent::ItemError(code),
        (_, code, _) => WebhookEvent::Ignored(code.to_string()),
    };
    let item_id = match (&event, wire.item_id) {
        (_, Some(id)) if !id.is_empty() => id,
        (WebhookEvent::Ignored(_), _) => String::new(),
        _ => return Err(format!("the {} webhook names no item", wire.webhook_code)),
    };
    Ok(Webhook { item_id, event })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(accounts: &str, added: &str) -> String {
        format!(
            r#"{{"accounts": [{accounts}], "added": [{added}], "modified": [], "removed": [],
                "next_cursor": "c1", "has_more": true, "request_id": "r"}}"#
        )
    }

    fn tx(amount: &str, currency: &str) -> String {
        format!(
            r#"{{"transaction_id": "t1", "account_id": "a1", "amount": {amount},
                "iso_currency_code": {currency}, "unofficial_currency_code": null,
                "date": "2023-09-24", "authorized_date": null, "pending": false,
                "pending_transaction_id": null, "name": "COFFEE", "merchant_name": null,
                "personal_finance_category": null}}"#
        )
    }

    fn acct(kind: &str, current: &str, available: &str, currency: &str) -> String {
        format!(
            r#"{{"account_id": "a1", "name": "N", "official_name": null, "mask": "0000",
                "type": "{kind}", "subtype": null,
                "balances": {{"available": {available}, "current": {current},
                              "iso_currency_code": {currency}, "limit": null,
                              "unofficial_currency_code": null}}}}"#
        )
    }

    fn first_amount(amount: &str, currency: &str) -> Result<i64, ProviderError> {
        parse_sync_page(body("", &tx(amount, currency)).as_bytes()).map(|p| p.added[0].amount)
    }

    #[test]
    fn transaction_amounts_are_minor_units_with_plaids_sign_inverted() {
        assert_eq!(first_amount("72.1", r#""USD""#), Ok(-7210));
        assert_eq!(first_amount("72.10", r#""USD""#), Ok(-7210));
        assert_eq!(first_amount("-1500.00", r#""USD""#), Ok(150000));
        assert_eq!(first_amount("0.01", r#""USD""#), Ok(-1));
        assert_eq!(first_amount("1500", r#""JPY""#), Ok(-1500));
        assert_eq!(first_amount("1.234", r#""KWD""#), Ok(-1234));
        for (amount, currency) in [
            ("0.005", r#""USD""#),
            ("1500.5", r#""JPY""#),
            ("1e3", r#""USD""#),
            (r#""72.10""#, r#""USD""#),
            ("72.10", r#""XYZ""#),
        ] {
            assert!(
                matches!(
                    first_amount(amount, currency),
                    Err(ProviderError::Refused(_))
                ),
                "{amount} {currency}"
            );
        }
    }

    #[test]
    fn an_unofficial_currency_row_has_no_currency_and_two_decimals() {
        let page = parse_sync_page(body("", &tx("12.34", "null")).as_bytes()).unwrap();
        assert_eq!(page.added[0].currency, None);
        assert_eq!(page.added[0].amount, -1234);
        // More decimals than two: a placeholder 0, not a failed page.
        assert_eq!(first_amount("0.00012345", "null"), Ok(0));
    }

    #[test]
    fn balances_keep_the_sign_of_money_held_and_negate_debt() {
        let accounts = [
            acct("depository", "1200.50", "1100.5", r#""USD""#),
            acct("credit", "410", "1590.00", r#""USD""#),
            acct("loan", "65262.00", "null", r#""USD""#),
            acct("depository", "-12.00", "null", r#""EUR""#),
        ]
        .join(",");
        let page = parse_sync_page(body(&accounts, "").as_bytes()).unwrap();
        let got: Vec<_> = page
            .accounts
            .iter()
            .map(|a| {
                (
                    a.current_balance,
                    a.available_balance,
                    a.currency.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(120050), Some(110050), Some("USD")),
                (Some(-41000), Some(159000), Some("USD")),
                (Some(-6526200), None, Some("USD")),
                (Some(-1200), None, Some("EUR")),
            ]
        );
        let unofficial = acct("depository", "0.12345678", "1.5", "null");
        let page = parse_sync_page(body(&unofficial, "").as_bytes()).unwrap();
        assert_eq!(page.accounts[0].currency, None);
        assert_eq!(page.accounts[0].current_balance, None);
        assert_eq!(page.accounts[0].available_balance, Some(150));
        let bad = acct("depository", "0.123", "null", r#""USD""#);
        assert!(matches!(
            parse_sync_page(body(&bad, "").as_bytes()),
            Err(ProviderError::Refused(_))
        ));
    }

    #[test]
    fn a_sync_page_keeps_its_fields() {
        let body = r#"{"accounts": [], "added": [{"transaction_id": "t2",
            "account_id": "a1", "amount": 28.34, "iso_currency_code": "USD",
            "date": "2023-09-28", "authorized_date": "2023-09-27", "pending": true,
            "pending_transaction_id": "t0", "name": "Dd Doordash", "merchant_name": "Burger King",
            "personal_finance_category": {"primary": "FOOD_AND_DRINK", "detailed": "X"}}],
            "modified": [], "removed": [{"transaction_id": "t9", "account_id": "a1"},
            {"transaction_id": "t8"}], "next_cursor": "", "has_more": false}"#;
        let page = parse_sync_page(body.as_bytes()).unwrap();
        let t = &page.added[0];
        assert_eq!(t.id, "t2");
        assert_eq!(t.amount, -2834);
        assert_eq!(t.date, NaiveDate::from_ymd_opt(2023, 9, 28).unwrap());
        assert_eq!(t.authorized_date, NaiveDate::from_ymd_opt(2023, 9, 27));
        assert!(t.pending);
        assert_eq!(t.pending_transaction_id.as_deref(), Some("t0"));
        assert_eq!(t.merchant_name.as_deref(), Some("Burger King"));
        assert_eq!(t.category_hint.as_deref(), Some("FOOD_AND_DRINK"));
        assert_eq!(
            page.removed,
            vec![
                Removed {
                    id: "t9".into(),
                    account_id: Some("a1".into())
                },
                Removed {
                    id: "t8".into(),
                    account_id: None
                },
            ]
        );
        assert_eq!(page.next_cursor, "");
        assert!(!page.has_more);
    }

    #[test]
    fn a_body_that_is_not_the_shape_is_refused_without_quoting_it() {
        for body in [
            r#"{"surprise": true}"#,
            "not json",
            r#"{"added": [], "modified": [], "removed": [], "next_cursor": 12345678, "has_more": false}"#,
        ] {
            match parse_sync_page(body.as_bytes()) {
                Err(ProviderError::Refused(m)) => assert!(!m.contains("12345678"), "{m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn plaid_errors_map_to_what_the_sync_does() {
        let body = |code: &str, kind: &str| {
            format!(r#"{{"error_type": "{kind}", "error_code": "{code}", "error_message": "m"}}"#)
        };
        let cases: Vec<(u16, String, ProviderError)> = vec![
            (
                400,
                body(
                    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
                    "TRANSACTIONS_ERROR",
                ),
                ProviderError::MutationDuringPagination,
            ),
            (
                400,
                body("ITEM_LOGIN_REQUIRED", "ITEM_ERROR"),
                ProviderError::NeedsReauth {
                    code: "ITEM_LOGIN_REQUIRED".into(),
                    message: "m".into(),
                },
            ),
            (
                400,
                body("PENDING_EXPIRATION", "ITEM_ERROR"),
                ProviderError::NeedsReauth {
                    code: "PENDING_EXPIRATION".into(),
                    message: "m".into(),
                },
            ),
            (
                400,
                body("PENDING_DISCONNECT", "ITEM_ERROR"),
                ProviderError::NeedsReauth {
                    code: "PENDING_DISCONNECT".into(),
                    message: "m".into(),
                },
            ),
            (
                400,
                body("ITEM_NOT_FOUND", "ITEM_ERROR"),
                ProviderError::Ended {
                    code: "ITEM_NOT_FOUND".into(),
                    message: "m".into(),
                },
            ),
            (
                400,
                body("INVALID_ACCESS_TOKEN", "INVALID_INPUT"),
                ProviderError::Ended {
                    code: "INVALID_ACCESS_TOKEN".into(),
                    message: "m".into(),
                },
            ),
            (
                400,
                body("USER_PERMISSION_REVOKED", "ITEM_ERROR"),
                ProviderError::Ended {
                    code: "USER_PERMISSION_REVOKED".into(),
                    message: "m".into(),
                },
            ),
            (
                429,
                body("RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED"),
                ProviderError::RateLimited,
            ),
            (
                429,
                body("TRANSACTIONS_SYNC_LIMIT", "RATE_LIMIT_EXCEEDED"),
                ProviderError::RateLimited,
            ),
            (429, "gateway says no".into(), ProviderError::RateLimited),
            (
                400,
                body("INSTITUTION_DOWN", "INSTITUTION_ERROR"),
                ProviderError::Unavailable("INSTITUTION_DOWN: m".into()),
            ),
            (
                400,
                body("INSTITUTION_NOT_RESPONDING", "INSTITUTION_ERROR"),
                ProviderError::Unavailable("INSTITUTION_NOT_RESPONDING: m".into()),
            ),
            (
                500,
                body("INTERNAL_SERVER_ERROR", "API_ERROR"),
                ProviderError::Unavailable("INTERNAL_SERVER_ERROR: m".into()),
            ),
            (
                503,
                body("SOMETHING_NEW", "API_ERROR"),
                ProviderError::Unavailable("SOMETHING_NEW: m".into()),
            ),
            (
                502,
                "<html>bad gateway</html>".into(),
                ProviderError::Unavailable("HTTP 502".into()),
            ),
            (
                400,
                body("INVALID_PUBLIC_TOKEN", "INVALID_INPUT"),
                ProviderError::Refused("INVALID_PUBLIC_TOKEN: m".into()),
            ),
            (
                400,
                "{}".into(),
                ProviderError::Refused("HTTP 400 without a Plaid error body".into()),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                parse_error(status, body.as_bytes()),
                want,
                "{status} {body}"
            );
        }
        let long = format!(
            r#"{{"error_code": "X", "error_message": "{}"}}"#,
            "a".repeat(500)
        );
        let ProviderError::Refused(m) = parse_error(400, long.as_bytes()) else {
            panic!()
        };
        assert!(m.chars().count() <= MAX_MESSAGE_CHARS + 4, "{}", m.len());
    }

    #[test]
    fn secrets_are_scrubbed_from_error_texts() {
        let e = ProviderError::Ended {
            code: "INVALID_ACCESS_TOKEN".into(),
            message: "token access-sandbox-123 with secret s3cr3t".into(),
        };
        let e = scrub(e, &["s3cr3t", "access-sandbox-123", ""]);
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("access-sandbox-123"),
            "{text}"
        );
        assert_eq!(
            scrub(ProviderError::RateLimited, &["x"]),
            ProviderError::RateLimited
        );
    }

    #[test]
    fn link_token_bodies_for_a_new_item_and_for_update_mode() {
        let config = PlaidConfig::new("http://x", "cid", Secret::new("sec".into()));
        let mut request = LinkRequest {
            client_user_id: "tenant-1".into(),
            webhook: Some("https://hooks.example/plaid".into()),
            access_token: None,
        };
        let body = link_token_body(&config, &request);
        assert_eq!(body["products"], json!(["transactions"]));
        assert_eq!(body["transactions"]["days_requested"], json!(730));
        assert_eq!(body["webhook"], json!("https://hooks.example/plaid"));
        assert_eq!(body["language"], json!("en"));
        assert_eq!(body["country_codes"], json!(["US"]));
        assert_eq!(body["user"]["client_user_id"], json!("tenant-1"));
        assert!(body.get("access_token").is_none());
        assert!(
            !body.to_string().contains("sec\""),
            "the secret travels in a header"
        );

        request.access_token = Some(Secret::new("access-sandbox-1".into()));
        request.webhook = None;
        let body = link_token_body(&config, &request);
        assert_eq!(body["access_token"], json!("access-sandbox-1"));
        assert!(body.get("products").is_none() && body.get("transactions").is_none());
        assert!(body.get("webhook").is_none());
    }

    #[test]
    fn sync_bodies_cap_the_count_and_omit_a_missing_cursor() {
        let body = sync_body("tok", None, 5000);
        assert_eq!(body["count"], json!(500));
        assert!(body.get("cursor").is_none());
        assert_eq!(
            body["options"]["include_personal_finance_category"],
            json!(true)
        );
        let body = sync_body("tok", Some("c1"), 0);
        assert_eq!(body["count"], json!(1));
        assert_eq!(body["cursor"], json!("c1"));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn jwt_headers_must_be_es256_with_a_kid() {
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let token = |h: Value| format!("{}.{}.sig", enc(h), enc(json!({})));
        let ok = token(json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}));
        assert_eq!(Jwt::split(&ok).unwrap().header().unwrap().kid, "k1");
        assert!(Jwt::split(&ok).unwrap().signed.ends_with(&enc(json!({}))));
        for bad in [
            token(json!({"alg": "HS256", "kid": "k1"})),
            token(json!({"alg": "none", "kid": "k1"})),
            token(json!({"alg": "ES256", "kid": ""})),
            token(json!({"alg": "ES256"})),
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            "!!!.b.c".to_string(),
        ] {
            assert!(Jwt::split(&bad).and_then(|j| j.header()).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_must_be_fresh_and_match_the_raw_body() {
        let body = b"{\n  \"webhook_type\": \"TRANSACTIONS\"\n}";
        let hash = kernel::hex::encode(Sha256::digest(body).as_slice());
        let claims = |iat, h: &str| JwtClaims {
            iat,
            request_body_sha256: h.to_string(),
        };
        assert!(check_claims(&claims(1000, &hash), body, 1000).is_ok());
        assert!(check_claims(&claims(1000, &hash.to_uppercase()), body, 1000).is_ok());
        assert!(check_claims(&claims(1000, &hash), body, 1300).is_ok());
        assert!(
            check_claims(&claims(1000, &hash), body, 1301).is_err(),
            "stale"
        );
        assert!(
            check_claims(&claims(1301, &hash), body, 1000).is_err(),
            "future"
        );
        assert!(
            check_claims(
                &claims(1000, &hash),
                b"{\"webhook_type\":\"TRANSACTIONS\"}",
                1000
            )
            .is_err()
        );
        assert!(check_claims(&claims(1000, ""), body, 1000).is_err());
    }

    #[test]
    fn webhook_bodies_say_what_they_are_about() {
        let parse = |v: Value| parse_webhook_body(v.to_string().as_bytes());
        assert_eq!(
            parse(
                json!({"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE",
                         "item_id": "i1", "initial_update_complete": true})
            ),
            Ok(Webhook {
                item_id: "i1".into(),
                event: WebhookEvent::SyncUpdatesAvailable
            })
        );
        assert_eq!(
            parse(
                json!({"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "i1",
                         "error": {"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED"}})
            ),
            Ok(Webhook {
                item_id: "i1".into(),
                event: WebhookEvent::ItemError("ITEM_LOGIN_REQUIRED".into())
            })
        );
        for code in [
            "INITIAL_UPDATE",
            "HISTORICAL_UPDATE",
            "DEFAULT_UPDATE",
            "TRANSACTIONS_REMOVED",
        ] {
            assert_eq!(
                parse(
                    json!({"webhook_type": "TRANSACTIONS", "webhook_code": code, "item_id": "i1"})
                ),
                Ok(Webhook {
                    item_id: "i1".into(),
                    event: WebhookEvent::Ignored(code.into())
                })
            );
        }
        assert_eq!(
            parse(
                json!({"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "i1", "error": null})
            ),
            Ok(Webhook {
                item_id: "i1".into(),
                event: WebhookEvent::Ignored("ERROR".into())
            })
        );
        assert!(
            parse(
                json!({"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE"})
            )
            .is_err()
        );
        assert!(parse(json!({"webhook_code": "X"})).is_err());
    }

    #[test]
    fn jwks_must_be_es256_p256_points_of_the_kid_asked_for() {
        let c = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let jwk = |kid: &str, crv: &str, x: &str| WireJwk {
            alg: Some("ES256".into()),
            crv: crv.into(),
            kid: kid.into(),
            kty: "EC".into(),
            x: x.into(),
            y: c.clone(),
            expired_at: None,
        };
        let key = verification_key_from_jwk(&jwk("k", "P-256", &c), "k").unwrap();
        assert_eq!(key.point.len(), 65);
        assert_eq!(key.point[0], 4);
        assert!(verification_key_from_jwk(&jwk("other", "P-256", &c), "k").is_err());
        assert!(verification_key_from_jwk(&jwk("k", "P-384", &c), "k").is_err());
        assert!(verification_key_from_jwk(&jwk("k", "P-256", "AAAA"), "k").is_err());
    }
}
