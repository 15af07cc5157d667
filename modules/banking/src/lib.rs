//! Bank connections (issue 23; DESIGN.md §1, §6; INTEGRATIONS.md §2): a provider trait
//! (link token, exchange, accounts, cursor sync, webhook check, disconnect) with two
//! providers, [`plaid`] (hand-written on reqwest against Plaid's JSON) and the built-in
//! [`sandbox`] bank (deterministic, on by default). A connection's provider token is sealed
//! by the vault, bound to its tenant, connection and item, and never leaves the module. A
//! sync fetches every page with no transaction open and applies them, with the new cursor,
//! in one transaction through the ledger's one dedup path ([`ledger::Ledger::apply_bank_changes`]):
//! a sync that dies halfway applied nothing. Failures are counted on the connection
//! (`needs_reauth` when the bank wants a new login, `error` after repeated failure, with
//! `bank.sync_failed`), and the bank's balance is kept beside ours (`bank.balance_drift`).

mod domain;
mod error;
mod http;
mod jobs;
pub mod plaid;
mod provider;
mod rotation;
pub mod sandbox;
mod service;
mod store;

pub use domain::{
    AccountChoice, BankAccount, Connection, ConnectionStatus, LastError, LinkTokenView, SyncReport,
};
pub use error::BankingError;
pub use http::{BankingApi, PERMISSIONS};
pub use jobs::{cron, register};
pub use provider::{
    Exchanged, LinkRequest, LinkToken, Provider, ProviderAccount, ProviderError,
    ProviderTransaction, Removed, SyncPage, Webhook, WebhookEvent, minor_units,
};
pub use rotation::BankTokens;
pub use service::{Banking, BankingConfig, Linked, SCHEDULE_JOB, SYNC_JOB, SyncRun};
