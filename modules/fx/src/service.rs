//! The fx service: the shipped history seeded once, the daily fetch, rate lookups and
//! conversions (one at a time, or many through a [`RateTable`] read in one statement).

use std::{collections::HashMap, time::Duration};

use chrono::NaiveDate;
use kernel::{Currency, Db, Tx};

use crate::{
    FxError,
    decimal::{self, Rate},
    ecb, store,
};

/// The ECB's history, 1999-01-04 to 2026-10-30, shipped as the product's seed.
pub const HISTORY: &str = include_str!("../data/eurofxref-hist.csv");

/// A rate is looked up on the date or at most this many days before (weekends, holidays).
pub const MAX_BACK_DAYS: i32 = 7;

/// The euro: the ECB's base, 1 on every date.
const EUR: &str = "EUR";

/// How to reach the ECB's daily file.
#[derive(Debug, Clone, Default)]
pub struct FxConfig {
    /// `BALANCE_FX_DAILY_URL`; `None`: rates come from the shipped history only.
    pub daily_url: Option<String>,
    pub timeout: Option<Duration>,
}

/// The fx service.
#[derive(Clone)]
pub struct Fx {
    db: Db,
    config: FxConfig,
    http: reqwest::Client,
}

/// A rate between two currencies on a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    /// `quote` per one `base`, exact to 10 decimal places.
    pub rate: Rate,
    /// The ECB dates the two legs were published on (the euro's is the date asked).
    pub base_date: NaiveDate,
    pub quote_date: NaiveDate,
}

/// An amount converted, and the rates' dates it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Converted {
    pub amount: i64,
    pub from_date: NaiveDate,
    pub to_date: NaiveDate,
}

/// Seeds the shipped history into `fx_rates` (rows already there are kept); quick when it
/// is complete. Run by `balance migrate`.
pub async fn seed_history(conn: &mut sqlx::PgConnection) -> Result<u64, FxError> {
    let rates = ecb::history(HISTORY).map_err(FxError::Source)?;
    if store::count(conn, "ecb-history").await? >= rates.len() as i64 {
        return Ok(0);
    }
    Ok(store::upsert(conn, &rates, "ecb-history", false).await?)
}

/// The rates of some currencies over a range of dates, read once, to convert many amounts.
#[derive(Debug, Clone, Default)]
pub struct RateTable {
    by_quote: HashMap<String, Vec<(NaiveDate, Rate)>>,
}

impl RateTable {
    /// The last rate of `code` on or before `date`, at most 7 days back.
    fn leg(&self, code: &str, date: NaiveDate) -> Result<(NaiveDate, Rate), FxError> {
        if code == EUR {
            return Ok((
                date,
                Rate {
                    mantissa: 1,
                    scale: 0,
                },
            ));
        }
        let missing = || FxError::RateMissing {
            currency: code.to_string(),
            date,
        };
        let rates = self.by_quote.get(code).ok_or_else(missing)?;
        let at = rates.partition_point(|(d, _)| *d <= date);
        let (on, rate) = at.checked_sub(1).map(|i| rates[i]).ok_or_else(missing)?;
        if (date - on).num_days() > i64::from(MAX_BACK_DAYS) {
            return Err(missing());
        }
        Ok((on, rate))
    }

    /// `amount` of `from` in `to` at the rates of `date`: cross through the euro, one
    /// half-even rounding to `to`'s minor units.
    pub fn convert(
        &self,
        amount: i64,
        from: Currency,
        to: Currency,
        date: NaiveDate,
    ) -> Result<Converted, FxError> {
        if from == to {
            return Ok(Converted {
                amount,
                from_date: date,
                to_date: date,
            });
        }
        let (from_date, from_rate) = self.leg(from.code(), date)?;
        let (to_date, to_rate) = self.leg(to.code(), date)?;
        let amount = decimal::convert(
            amount,
            from.minor_units(),
            from_rate,
            to.minor_units(),
            to_rate,
        )
        .ok_or(FxError::Overflow)?;
        Ok(Converted {
            amount,
            from_date,
            to_date,
        })
    }

    /// The rate of `quote` per `base` on `date` (codes of the ECB's file, retired ones too).
    pub fn quote(&self, base: &str, quote: &str, date: NaiveDate) -> Result<Quoted, FxError> {
        let (base_date, base_rate) = self.leg(base, date)?;
        let (quote_date, quote_rate) = self.leg(quote, date)?;
        let rate = decimal::cross(base_rate, quote_rate, 10).ok_or(FxError::Overflow)?;
        Ok(Quoted {
            rate,
            base_date,
            quote_date,
        })
    }
}

fn code(field: &str, raw: &str) -> Result<String, FxError> {
    if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(raw.to_string())
    } else {
        Err(FxError::Invalid(kernel::FieldError::new(
            field,
            "must be a three-letter currency code such as EUR",
        )))
    }
}

impl Fx {
    pub fn new(db: Db, config: FxConfig) -> Result<Fx, FxError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout.unwrap_or(Duration::from_secs(30)))
            .build()
            .map_err(|e| FxError::Source(e.to_string()))?;
        Ok(Fx { db, config, http })
    }

    /// The rates of `currencies` needed to convert anything dated `from` to `to`, in one
    /// statement.
    pub async fn table<T: Tx>(
        &self,
        tx: &mut T,
        currencies: &[&str],
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<RateTable, FxError> {
        let quotes: Vec<String> = currencies
            .iter()
            .filter(|c| **c != EUR)
            .map(|c| c.to_string())
            .collect();
        let mut table = RateTable::default();
        if quotes.is_empty() {
            return Ok(table);
        }
        for (quote, date, rate) in
            store::rates_between(tx.conn(), &quotes, from, to, MAX_BACK_DAYS).await?
        {
            table.by_quote.entry(quote).or_default().push((date, rate));
        }
        Ok(table)
    }

    /// `amount` of `from` in `to` at the rates of `date`.
    pub async fn convert<T: Tx>(
        &self,
        tx: &mut T,
        amount: i64,
        from: Currency,
        to: Currency,
        date: NaiveDate,
    ) -> Result<Converted, FxError> {
        let table = self
            .table(tx, &[from.code(), to.code()], date, date)
            .await?;
        table.convert(amount, from, to, date)
    }

    /// The rate of `quote` per `base` on `date` (`GET /fx/rates`).
    pub async fn quote<T: Tx>(
        &self,
        tx: &mut T,
        base: &str,
        quote: &str,
        date: NaiveDate,
    ) -> Result<Quoted, FxError> {
        let (base, quote) = (code("base", base)?, code("quote", quote)?);
        let table = self.table(tx, &[&base, &quote], date, date).await?;
        table.quote(&base, &quote, date)
    }

    /// The newest date any rate is known for.
    pub async fn latest<T: Tx>(&self, tx: &mut T) -> Result<Option<NaiveDate>, FxError> {
        Ok(store::latest_date(tx.conn()).await?)
    }

    /// Fetches the ECB's daily file and writes its rates (the day it publishes wins over
    /// what was there). `Ok(None)` when no URL is configured.
    pub async fn fetch_daily(&self) -> Result<Option<u64>, FxError> {
        let Some(url) = &self.config.daily_url else {
            return Ok(None);
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| FxError::Source(format!("{e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FxError::Source(format!("answered {status}")));
        }
        let body = response
            .text()
            .await
            .map_err(|e| FxError::Source(format!("{e}")))?;
        let rates = ecb::daily(&body).map_err(FxError::Source)?;
        let mut tx = kernel::SystemTx::begin(&self.db, kernel::Actor::System).await?;
        let written = store::upsert(tx.conn(), &rates, "ecb-daily", true).await?;
        tx.commit().await?;
        Ok(Some(written))
    }
}
