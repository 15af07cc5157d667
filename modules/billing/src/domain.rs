//! What billing shows: the catalogue, a tenant's subscription and its entitlements.

use chrono::{DateTime, NaiveDate, Utc};
use poem_openapi::Object;

/// A plan's limits; `null` is unlimited.
#[derive(Debug, Clone, Object)]
pub struct PlanLimits {
    pub members: Option<i64>,
    pub bank_connections: Option<i64>,
    pub transactions_per_month: Option<i64>,
    /// Members who receive alerts from the Telegram bot.
    pub telegram_recipients: Option<i64>,
}

/// One plan of the catalogue.
#[derive(Debug, Clone, Object)]
#[oai(rename = "BillingPlan")]
pub struct PlanView {
    /// `free`, `team` or `business`.
    pub id: String,
    pub name: String,
    /// The monthly price in minor units of `currency` (`2900` is 29.00).
    pub monthly_price: i64,
    pub currency: String,
    /// Whether a checkout can subscribe to it here.
    pub purchasable: bool,
    pub limits: PlanLimits,
}

/// The public catalogue.
#[derive(Debug, Clone, Object)]
pub struct PlanCatalogue {
    /// `false`: this platform runs without Stripe, every tenant is on `free`.
    pub billing_enabled: bool,
    pub plans: Vec<PlanView>,
}

/// A tenant's plan and subscription.
#[derive(Debug, Clone, Object)]
pub struct Subscription {
    /// The plan whose limits apply.
    pub plan: String,
    /// Stripe's status (`trialing`, `active`, `past_due`, `canceled`, `unpaid`, …); `null`
    /// before the first subscription.
    pub status: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    /// Since when the payment is overdue.
    pub past_due_since: Option<DateTime<Utc>>,
    /// When the workspace becomes (or became) read-only unless the payment is settled.
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// Every change but billing's answers `402` while this is `true`.
    pub read_only: bool,
}

/// One limit with its current usage.
#[derive(Debug, Clone, Object)]
pub struct Entitlement {
    /// `members`, `bank_connections`, `transactions_per_month` or `telegram_recipients`.
    pub limit: String,
    /// `null`: unlimited.
    pub allowed: Option<i64>,
    pub used: i64,
    /// Over the limit (after a downgrade, or by a bank sync): nothing is deleted, but
    /// nothing more can be added until back under.
    pub over: bool,
}

/// Each limit of the tenant's plan with its usage.
#[derive(Debug, Clone, Object)]
pub struct Entitlements {
    pub plan: String,
    /// The month `transactions_per_month` counts (UTC).
    pub period_start: NaiveDate,
    pub limits: Vec<Entitlement>,
}

/// A Stripe-hosted page to send the person to.
#[derive(Debug, Clone, Object)]
pub struct HostedSession {
    pub url: String,
}
