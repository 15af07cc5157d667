//! `GET /fx/rates` (public).

use chrono::NaiveDate;
use kernel::ApiResult;
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};

use crate::Fx;

#[derive(poem_openapi::Tags)]
enum Tag {
    /// The ECB's reference rates, which every conversion uses.
    Fx,
}

/// A reference rate between two currencies.
#[derive(Debug, Object)]
pub struct FxRate {
    pub base: String,
    pub quote: String,
    /// The date asked for.
    pub date: NaiveDate,
    /// `quote` per one `base` as a decimal string (exact to 10 decimal places), crossed
    /// through the euro.
    pub rate: String,
    /// The ECB dates the two legs were published on: the last on or before `date`, at most
    /// 7 days earlier (weekends and TARGET holidays have none).
    pub base_rate_date: NaiveDate,
    pub quote_rate_date: NaiveDate,
    pub source: String,
}

pub struct FxApi {
    fx: Fx,
    db: kernel::Db,
}

impl FxApi {
    pub fn new(db: kernel::Db, fx: Fx) -> FxApi {
        FxApi { fx, db }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Fx")]
impl FxApi {
    /// The ECB reference rate of `quote` per `base` on `date` (default: the newest date
    /// known), crossed through the euro (public). No rate within 7 days before the date is
    /// `422 fx_rate_missing`.
    #[oai(path = "/fx/rates", method = "get", operation_id = "get_fx_rate")]
    async fn get_fx_rate(
        &self,
        /// Default `EUR`.
        base: Query<Option<String>>,
        quote: Query<String>,
        date: Query<Option<NaiveDate>>,
    ) -> ApiResult<Json<FxRate>> {
        let base = base.0.unwrap_or_else(|| "EUR".into());
        let mut tx = kernel::SystemTx::begin(&self.db, kernel::Actor::System).await?;
        let date = match date.0 {
            Some(date) => date,
            None => self
                .fx
                .latest(&mut tx)
                .await?
                .unwrap_or_else(|| chrono::Utc::now().date_naive()),
        };
        let quoted = self.fx.quote(&mut tx, &base, &quote.0, date).await?;
        tx.commit().await?;
        Ok(Json(FxRate {
            base,
            quote: quote.0,
            date,
            rate: quoted.rate.to_string(),
            base_rate_date: quoted.base_date,
            quote_rate_date: quoted.quote_date,
            source: "ECB euro foreign exchange reference rates".into(),
        }))
    }
}
