//! Exchange rates (issue 25; DESIGN.md §10; INTEGRATIONS.md §7): the ECB's reference
//! rates in the global `fx_rates`, seeded from the history shipped in `data/` and kept
//! current by a daily job ([`jobs`]) that fetches the ECB's daily file when
//! `BALANCE_FX_DAILY_URL` is set. A conversion takes the last rate on or before the date
//! (at most 7 days back, else `fx_rate_missing`), crosses through the euro, and rounds
//! once, half to even, to the target's minor units, in exact integer arithmetic
//! ([`decimal`]).

pub mod decimal;
pub mod ecb;
mod error;
mod http;
mod jobs;
mod service;
mod store;

pub use error::FxError;
pub use http::{FxApi, FxRate};
pub use jobs::{DAILY_JOB, cron, register};
pub use service::{
    Converted, Fx, FxConfig, HISTORY, MAX_BACK_DAYS, Quoted, RateTable, seed_history,
};
