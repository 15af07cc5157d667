//! What the banking module shows and takes.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Syncing.
    Active,
    /// The bank wants the person to log in again: `POST …/link-token` with the
    /// connection's id gives an update-mode token; after Link, `POST …/sync`.
    NeedsReauth,
    /// Syncs failed repeatedly (or the provider ended the item); scheduled syncs keep trying.
    Error,
    /// Disconnected by a person: the token is revoked and gone, the history stays.
    Disconnected,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReauth => "needs_reauth",
            ConnectionStatus::Error => "error",
            ConnectionStatus::Disconnected => "disconnected",
        }
    }

    pub fn from_db(s: &str) -> ConnectionStatus {
        match s {
            "needs_reauth" => ConnectionStatus::NeedsReauth,
            "error" => ConnectionStatus::Error,
            "disconnected" => ConnectionStatus::Disconnected,
            _ => ConnectionStatus::Active,
        }
    }
}

/// The last failure of a connection.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct LastError {
    /// The provider's code (`ITEM_LOGIN_REQUIRED`, `RATE_LIMIT_EXCEEDED`, …).
    pub code: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A bank account of a connection and the ledger account it syncs into.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct BankAccount {
    pub provider_account_id: String,
    /// The ledger account.
    pub account_id: Uuid,
    pub name: String,
    /// The last digits of the account number, as the bank shows them.
    pub mask: Option<String>,
    pub kind: String,
    pub subtype: Option<String>,
    pub currency: String,
    /// The bank's balance at the last sync (minor units; our sign).
    pub reported_balance: Option<i64>,
    pub available_balance: Option<i64>,
    /// Our balance computed from the ledger.
    pub computed_balance: i64,
    /// `reported_balance − computed_balance` at the last sync (0: they agree).
    pub drift: i64,
}

/// A bank connection. Its provider token is sealed at rest and never shown.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Connection {
    pub id: Uuid,
    /// `plaid` or `sandbox`.
    pub provider: String,
    pub institution: Option<String>,
    pub status: ConnectionStatus,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub last_error: Option<LastError>,
    /// The sync queued or running, if any.
    pub sync_job_id: Option<Uuid>,
    pub accounts: Vec<BankAccount>,
    pub created_at: DateTime<Utc>,
    pub disconnected_at: Option<DateTime<Utc>>,
    pub version: i64,
}

/// Where a provider account's transactions go when connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChoice {
    pub provider_account_id: String,
    /// An existing ledger account of the same currency; `None`: open a new one.
    pub account_id: Option<Uuid>,
}

/// A link token.
#[derive(Debug, Clone, Object)]
pub struct LinkTokenView {
    pub link_token: String,
    pub expires_at: DateTime<Utc>,
}

/// What one sync did, as its summary event says it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub pages: u64,
    pub restarts: u64,
    pub added: u64,
    pub present: u64,
    pub linked: u64,
    pub posted: u64,
    pub modified: u64,
    pub removed: u64,
    pub ignored: u64,
    /// Rows refused: an unofficial currency, another currency than the account's, or an
    /// account the connection does not link.
    pub refused: u64,
}
