//! The ledger (DESIGN.md §6, §8): accounts whose balances are maintained with every change
//! and read in O(1), the tenant's categories (a default business set to start with), and
//! transactions. Imports, bank syncs and rules write through [`Ledger`]; budgets,
//! notifications, the bot and exports read through it. Every account-owned table is under
//! the account scope the access decision sets, so a caller limited to some accounts sees
//! only them, on every path.

mod automation;
pub mod domain;
mod error;
mod http;
mod ingest;
mod service;
mod store;
mod sync;

pub use automation::{
    Applied, Arrival, Arrivals, AutoChange, Candidate, Categorised, Changes, Selection,
};
pub use domain::{
    Account, AccountChanges, AccountKind, Categorization, Category, CategoryChanges, CategoryKind,
    DayBalance, Editor, Fingerprint, Iban, Incoming, MatchedBy, Neighbour, NewAccount, NewCategory,
    NewTransaction, NewTransfer, Ordinals, Outcome, Split, Transaction, TransactionChanges,
    TransactionFilter, TransactionSource, TransactionStatus, Transfer, fingerprint_text,
};
pub use error::LedgerError;
pub use http::{LedgerApi, PERMISSIONS};
pub use ingest::{Reverted, batch_index};
pub use service::{Ledger, MAX_SERIES_DAYS, SearchPlan};
pub use store::DaySums;
pub use sync::{BankChanges, SyncOutcome, Synced};
