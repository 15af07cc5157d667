//! The ledger (DESIGN.md §6, §8): accounts whose balances are maintained with every change
//! and read in O(1), the tenant's categories (a default business set to start with), and
//! transactions. Imports, bank syncs and rules write through [`Ledger`]; budgets,
//! notifications, the bot and exports read through it. Every account-owned table is under
//! the account scope the access decision sets, so a caller limited to some accounts sees
//! only them, on every path.

pub mod domain;
mod error;
mod http;
mod service;
mod store;

pub use domain::{
    Account, AccountChanges, AccountKind, Categorization, Category, CategoryChanges, CategoryKind,
    DayBalance, Editor, Iban, NewAccount, NewCategory, NewTransaction, NewTransfer, Split,
    Transaction, TransactionChanges, TransactionFilter, TransactionSource, TransactionStatus,
    Transfer,
};
pub use error::LedgerError;
pub use http::{LedgerApi, PERMISSIONS};
pub use service::{Ledger, MAX_SERIES_DAYS};
