//! The fx module's SQL: the global `fx_rates`.

use chrono::NaiveDate;
use sqlx::PgConnection;

use crate::{decimal::Rate, ecb::Published};

/// How many rows one statement writes.
const BATCH: usize = 10_000;

/// Writes rates; a row already there keeps its value unless `overwrite` (the daily file
/// corrects the day it publishes). Returns how many rows were new or changed.
pub(crate) async fn upsert(
    conn: &mut PgConnection,
    rates: &[Published],
    source: &str,
    overwrite: bool,
) -> Result<u64, sqlx::Error> {
    let mut written = 0;
    for chunk in rates.chunks(BATCH) {
        let quotes: Vec<String> = chunk.iter().map(|r| r.quote.clone()).collect();
        let dates: Vec<NaiveDate> = chunk.iter().map(|r| r.date).collect();
        let values: Vec<String> = chunk.iter().map(|r| r.rate.to_string()).collect();
        let done = if overwrite {
            sqlx::query!(
                "INSERT INTO fx_rates (quote, date, rate, source)
                 SELECT q, d, r::numeric, $4 FROM unnest($1::text[], $2::date[], $3::text[]) AS u(q, d, r)
                 ON CONFLICT (quote, date) DO UPDATE SET rate = EXCLUDED.rate, source = EXCLUDED.source,
                     fetched_at = now()
                 WHERE fx_rates.rate <> EXCLUDED.rate",
                &quotes,
                &dates,
                &values,
                source,
            )
            .execute(&mut *conn)
            .await?
        } else {
            sqlx::query!(
                "INSERT INTO fx_rates (quote, date, rate, source)
                 SELECT q, d, r::numeric, $4 FROM unnest($1::text[], $2::date[], $3::text[]) AS u(q, d, r)
                 ON CONFLICT (quote, date) DO NOTHING",
                &quotes,
                &dates,
                &values,
                source,
            )
            .execute(&mut *conn)
            .await?
        };
        written += done.rows_affected();
    }
    Ok(written)
}

pub(crate) async fn count(conn: &mut PgConnection, source: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM fx_rates WHERE source = $1"#,
        source
    )
    .fetch_one(conn)
    .await
}

/// Every rate of `quotes` from `from − back` to `to`, by quote and date, for a table that
/// converts many amounts without a statement each.
pub(crate) async fn rates_between(
    conn: &mut PgConnection,
    quotes: &[String],
    from: NaiveDate,
    to: NaiveDate,
    back: i32,
) -> Result<Vec<(String, NaiveDate, Rate)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT quote, date, rate::text AS "rate!" FROM fx_rates
           WHERE quote = ANY($1) AND date >= $2::date - $4::int AND date <= $3
           ORDER BY quote, date"#,
        quotes,
        from,
        to,
        back,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.quote, r.date, Rate::parse(&r.rate)?)))
        .collect())
}

pub(crate) async fn latest_date(conn: &mut PgConnection) -> Result<Option<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar!("SELECT max(date) FROM fx_rates")
        .fetch_one(conn)
        .await
}
