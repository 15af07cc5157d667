//! What a bank data provider does for us, whoever it is (Plaid, the built-in sandbox): link
//! tokens, the exchange of a public token for an access token, accounts, cursor sync,
//! webhook checks and disconnection. Amounts arrive here already in our convention
//! (integer minor units, negative for money out), parsed from the provider's decimal text,
//! never through a float.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::future::BoxFuture;
use kernel::Secret;

/// What a link token is asked for.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    /// Who links (our tenant id, as the provider's `client_user_id`).
    pub client_user_id: String,
    /// Where the provider posts its webhooks for this item, when we take them.
    pub webhook: Option<String>,
    /// Update mode: the access token of a connection to repair (re-login).
    pub access_token: Option<Secret<String>>,
}

/// A short-lived token the front end opens the provider's Link with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkToken {
    pub link_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A public token exchanged: the item's long-lived access token (sealed at rest by the
/// caller; never logged, never returned) and the provider's id of the item.
#[derive(Debug)]
pub struct Exchanged {
    pub access_token: Secret<String>,
    pub item_id: String,
    /// The institution's name when the provider says it.
    pub institution: Option<String>,
}

/// An account the provider reports for an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    /// The provider's id of the account (Plaid `account_id`).
    pub id: String,
    pub name: String,
    pub official_name: Option<String>,
    /// The last digits of the account number (never more).
    pub mask: Option<String>,
    /// `depository`, `credit`, `loan`, `investment`, `other`.
    pub kind: String,
    /// `checking`, `savings`, `credit card`, …
    pub subtype: Option<String>,
    /// ISO 4217; `None` when the provider gives only an unofficial currency.
    pub currency: Option<String>,
    /// The bank's current balance in minor units, our sign (a card's debt is negative).
    pub current_balance: Option<i64>,
    /// The balance available to spend, in minor units, our sign.
    pub available_balance: Option<i64>,
}

/// One transaction as the provider sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTransaction {
    /// The provider's id (Plaid `transaction_id`).
    pub id: String,
    /// The provider's id of its account.
    pub account_id: String,
    /// Minor units of `currency`, negative for money out (Plaid's sign inverted).
    pub amount: i64,
    /// ISO 4217; `None` when the provider gives only an unofficial currency (such a row
    /// is refused by the sync, with a warning, never guessed).
    pub currency: Option<String>,
    /// The booking date (Plaid `date`).
    pub date: NaiveDate,
    /// When the purchase was authorised (Plaid `authorized_date`).
    pub authorized_date: Option<NaiveDate>,
    pub pending: bool,
    /// For a posted transaction: the id of the pending one it replaces.
    pub pending_transaction_id: Option<String>,
    /// The bank's text (Plaid `name`).
    pub name: String,
    /// The merchant, when the provider recognised one (Plaid `merchant_name`).
    pub merchant_name: Option<String>,
    /// The provider's own category (Plaid `personal_finance_category.primary`), a hint only.
    pub category_hint: Option<String>,
}

/// A transaction the provider no longer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub id: String,
    pub account_id: Option<String>,
}

/// One page of a cursor sync.
#[derive(Debug, Clone, Default)]
pub struct SyncPage {
    pub added: Vec<ProviderTransaction>,
    pub modified: Vec<ProviderTransaction>,
    pub removed: Vec<Removed>,
    /// The accounts with their balances as of this page (Plaid sends them on every page).
    pub accounts: Vec<ProviderAccount>,
    /// The cursor after this page; `""` while the provider has no data yet.
    pub next_cursor: String,
    pub has_more: bool,
    /// The provider has sent all the history it will (Plaid `transactions_update_status:
    /// HISTORICAL_UPDATE_COMPLETE`): before that, a first sync brings 30 days, then two
    /// years arrive, so balances are calibrated only once this holds.
    pub history_complete: bool,
}

/// A webhook that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The provider's id of the item it is about.
    pub item_id: String,
    pub event: WebhookEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// New, changed or removed transactions are waiting: sync.
    SyncUpdatesAvailable,
    /// The item broke (Plaid `ITEM` / `ERROR` with its `error_code`).
    ItemError(String),
    /// Anything else (legacy transaction webhooks among them): acknowledged, ignored.
    Ignored(String),
}

/// Why a provider call failed, in the terms the sync acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The data changed while we paged (Plaid `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`):
    /// restart the whole loop from the first page's cursor.
    #[error("the provider's data changed during pagination")]
    MutationDuringPagination,
    /// The person must log in again at their bank (`ITEM_LOGIN_REQUIRED`,
    /// `PENDING_EXPIRATION`, `PENDING_DISCONNECT`): the connection `needs_reauth`.
    #[error("the bank needs the person to log in again ({code})")]
    NeedsReauth { code: String, message: String },
    /// The item is gone (`ITEM_NOT_FOUND`, `INVALID_ACCESS_TOKEN`, `USER_PERMISSION_REVOKED`).
    #[error("the connection ended at the provider ({code})")]
    Ended { code: String, message: String },
    /// `RATE_LIMIT_EXCEEDED` or HTTP 429: back off.
    #[error("the provider is rate limiting us")]
    RateLimited,
    /// Worth retrying later: the institution or the provider is down, a timeout, a 5xx, a
    /// connection refused.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The request was refused for a reason retrying will not fix (a bad public token, an
    /// unknown code), or the answer did not parse.
    #[error("the provider refused the request: {0}")]
    Refused(String),
    /// A webhook that does not check out (no or bad signature, stale, body hash mismatch).
    #[error("the webhook does not verify: {0}")]
    BadWebhook(String),
}

impl ProviderError {
    /// The provider's error code, for the connection's `last_error` (never a token).
    pub fn code(&self) -> &str {
        match self {
            ProviderError::MutationDuringPagination => {
                "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"
            }
            ProviderError::NeedsReauth { code, .. } | ProviderError::Ended { code, .. } => code,
            ProviderError::RateLimited => "RATE_LIMIT_EXCEEDED",
            ProviderError::Unavailable(_) => "PROVIDER_UNAVAILABLE",
            ProviderError::Refused(_) => "PROVIDER_REFUSED",
            ProviderError::BadWebhook(_) => "BAD_WEBHOOK",
        }
    }

    /// Whether running again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::MutationDuringPagination
                | ProviderError::RateLimited
                | ProviderError::Unavailable(_)
        )
    }
}

/// A bank data provider.
pub trait Provider: Send + Sync + 'static {
    /// `plaid`, `sandbox`: stored on the connection and matched on requests.
    fn name(&self) -> &'static str;

    /// A link token for the front end (or, with `access_token`, an update-mode one).
    fn link_token<'a>(
        &'a self,
        request: &'a LinkRequest,
    ) -> BoxFuture<'a, Result<LinkToken, ProviderError>>;

    /// Exchanges the single-use public token Link returned.
    fn exchange<'a>(
        &'a self,
        public_token: &'a str,
    ) -> BoxFuture<'a, Result<Exchanged, ProviderError>>;

    /// The item's accounts with their balances.
    fn accounts<'a>(
        &'a self,
        access_token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<Vec<ProviderAccount>, ProviderError>>;

    /// One page of changes after `cursor` (`None`: from the start), at most `count` rows.
    fn sync<'a>(
        &'a self,
        access_token: &'a Secret<String>,
        cursor: Option<&'a str>,
        count: u32,
    ) -> BoxFuture<'a, Result<SyncPage, ProviderError>>;

    /// Checks a webhook's signature against the raw body and says what it is about.
    fn verify_webhook<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Webhook, ProviderError>>;

    /// Revokes the access token at the provider.
    fn disconnect<'a>(
        &'a self,
        access_token: &'a Secret<String>,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;
}

/// A decimal literal (`72.1`, `-1500`, `0.005`) as minor units of a currency with
/// `exponent` digits; `None` when it is not a plain decimal, has more digits than the
/// currency (a fraction of a cent), or does not fit.
pub fn minor_units(literal: &str, exponent: u8) -> Option<i64> {
    let text = literal.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = fraction.trim_end_matches('0');
    if significant.len() > usize::from(exponent) {
        return None;
    }
    let mut value: i64 = whole.parse().ok()?;
    let mut scale_left = exponent;
    for b in significant.bytes() {
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
        scale_left -= 1;
    }
    for _ in 0..scale_left {
        value = value.checked_mul(10)?;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::minor_units;

    #[test]
    fn decimal_literals_become_minor_units_without_floats() {
        assert_eq!(minor_units("72.1", 2), Some(7210));
        assert_eq!(minor_units("-4.22", 2), Some(-422));
        assert_eq!(minor_units("1500", 0), Some(1500));
        assert_eq!(minor_units("0.10", 2), Some(10));
        assert_eq!(minor_units("12.3450", 3), Some(12345));
        assert_eq!(minor_units("0.005", 2), None, "a fraction of a cent");
        assert_eq!(minor_units("1e3", 2), None);
        assert_eq!(minor_units("", 2), None);
        assert_eq!(minor_units(".5", 2), None);
        assert_eq!(minor_units("92233720368547758.08", 2), None, "overflow");
        // The float nearest 0.1 + 0.2 is not 0.3; the literal is.
        assert_eq!(minor_units("0.3", 2), Some(30));
    }
}
