//! Plan limits (issue 24), as the modules that create limited things see them: the billing
//! module implements [`Limits`], and the ledger, tenancy and banking services call it in the
//! transaction that creates, so the check and the write commit together. The modules never
//! depend on billing; the platform hands each the one implementation.

use futures_util::future::BoxFuture;
use poem::http::StatusCode;

use crate::{Problem, TenantTx};

/// A limited quantity of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Members of the tenant.
    Members,
    /// Bank connections that are not disconnected.
    BankConnections,
    /// Transactions created in a calendar month (UTC), by hand, import or sync.
    TransactionsPerMonth,
    /// Members who receive alerts from the Telegram bot.
    TelegramRecipients,
}

impl Limit {
    pub const ALL: [Limit; 4] = [
        Limit::Members,
        Limit::BankConnections,
        Limit::TransactionsPerMonth,
        Limit::TelegramRecipients,
    ];

    /// The limit's name in the API (`members`, `bank_connections`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Members => "members",
            Limit::BankConnections => "bank_connections",
            Limit::TransactionsPerMonth => "transactions_per_month",
            Limit::TelegramRecipients => "telegram_recipients",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The checks a creating transaction makes.
pub trait Limits: Send + Sync {
    /// Admits `adding` more of `limit` in the caller's transaction, or refuses with
    /// [`plan_limit_reached`]. The tenant's usage is locked until the transaction ends, so
    /// two concurrent creates at `limit − 1` cannot both pass.
    fn admit<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        limit: Limit,
        adding: i64,
    ) -> BoxFuture<'a, Result<(), Problem>>;

    /// Whether `adding` more would fit now, without counting or locking anything: an early
    /// answer for a request whose writing happens later (an import's commit queues the job
    /// that admits its rows).
    fn check<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        limit: Limit,
        adding: i64,
    ) -> BoxFuture<'a, Result<(), Problem>>;

    /// Refuses (`402 tenant_read_only`) a change to a tenant that is read-only for an
    /// overdue payment, for the few writes that reach a tenant without the access decision
    /// (accepting an invitation).
    fn writable<'a>(&'a self, tx: &'a mut TenantTx) -> BoxFuture<'a, Result<(), Problem>>;

    /// Counts `added` that must never be refused (a bank sync's transactions: bank data is
    /// never dropped); crossing the limit this way is reported once per period.
    fn count<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        limit: Limit,
        added: i64,
    ) -> BoxFuture<'a, Result<(), Problem>>;
}

/// `402 plan_limit_reached`, naming the limit.
pub fn plan_limit_reached(limit: Limit, allowed: i64, plan: &str) -> Problem {
    Problem::new(
        StatusCode::PAYMENT_REQUIRED,
        "plan_limit_reached",
        "Plan limit reached",
    )
    .with_detail(format!(
        "The `{plan}` plan allows {allowed} {}; upgrade the plan or remove some first.",
        limit.as_str().replace('_', " ")
    ))
    .with_limit(limit)
}

/// `402 tenant_read_only`: the tenant's payment is overdue past its grace; billing, exports
/// and every read still work.
pub fn read_only() -> Problem {
    Problem::new(StatusCode::PAYMENT_REQUIRED, "tenant_read_only", "Read-only").with_detail(
        "This workspace is read-only because its payment is overdue; a billing member can settle it under Billing. Reading and exporting still work.",
    )
}
