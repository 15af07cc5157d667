//! The plan catalogue: `free`, `team` and `business` with their monthly prices, Stripe price
//! ids and limits. Built-in defaults; an operator overrides any part with a JSON document
//! (`BALANCE_PLANS`), checked at start so a typo never reaches a customer.

use std::collections::BTreeMap;

use kernel::limits::Limit;
use serde::Deserialize;

/// The plan every tenant starts on, and falls back to when a subscription ends.
pub const FREE: &str = "free";

/// One plan of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    /// The monthly price in minor units of `currency`.
    pub monthly_price: i64,
    pub currency: String,
    /// The Stripe price a checkout subscribes to; `None`: not sold through Checkout.
    pub stripe_price_id: Option<String>,
    /// Each limit; `None` is unlimited.
    pub limits: BTreeMap<&'static str, Option<i64>>,
}

impl Plan {
    /// The limit of `limit` on this plan (`None`: unlimited).
    pub fn limit(&self, limit: Limit) -> Option<i64> {
        self.limits.get(limit.as_str()).copied().flatten()
    }
}

/// The catalogue in its order (cheapest first).
#[derive(Debug, Clone)]
pub struct Catalogue {
    plans: Vec<Plan>,
}

fn plan(id: &str, name: &str, price: i64, limits: [Option<i64>; 4]) -> Plan {
    Plan {
        id: id.into(),
        name: name.into(),
        monthly_price: price,
        currency: "USD".into(),
        stripe_price_id: None,
        limits: Limit::ALL
            .iter()
            .zip(limits)
            .map(|(l, v)| (l.as_str(), v))
            .collect(),
    }
}

impl Default for Catalogue {
    /// members, bank connections, transactions per month, Telegram recipients.
    fn default() -> Catalogue {
        Catalogue {
            plans: vec![
                plan(FREE, "Free", 0, [Some(3), Some(2), Some(1_000), Some(1)]),
                plan(
                    "team",
                    "Team",
                    2_900,
                    [Some(15), Some(10), Some(20_000), Some(15)],
                ),
                plan(
                    "business",
                    "Business",
                    9_900,
                    [Some(100), Some(50), Some(250_000), Some(100)],
                ),
            ],
        }
    }
}

/// An override of one plan; every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanOverride {
    name: Option<String>,
    monthly_price: Option<i64>,
    currency: Option<String>,
    stripe_price_id: Option<String>,
    /// `null` makes a limit unlimited.
    #[serde(default)]
    limits: BTreeMap<String, Option<i64>>,
}

impl Catalogue {
    /// The defaults with `overrides` applied: `{"team": {"stripe_price_id": "price_…",
    /// "limits": {"members": 20}}, …}`. Only the three plans exist; every limit must be a
    /// known one and not negative.
    pub fn with_overrides(overrides: &str) -> Result<Catalogue, String> {
        let mut catalogue = Catalogue::default();
        let parsed: BTreeMap<String, PlanOverride> =
            serde_json::from_str(overrides).map_err(|e| format!("not a plans document: {e}"))?;
        for (id, o) in parsed {
            let Some(plan) = catalogue.plans.iter_mut().find(|p| p.id == id) else {
                return Err(format!("`{id}` is not a plan (free, team, business)"));
            };
            if let Some(name) = o.name {
                plan.name = name;
            }
            if let Some(price) = o.monthly_price {
                if price < 0 {
                    return Err(format!("{id}.monthly_price must not be negative"));
                }
                plan.monthly_price = price;
            }
            if let Some(currency) = o.currency {
                if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
                    return Err(format!("{id}.currency must be an ISO 4217 code"));
                }
                plan.currency = currency;
            }
            if let Some(price) = o.stripe_price_id {
                if id == FREE {
                    return Err("the free plan has no Stripe price".into());
                }
                if !price.starts_with("price_") {
                    return Err(format!(
                        "{id}.stripe_price_id must be a Stripe price (`price_…`)"
                    ));
                }
                plan.stripe_price_id = Some(price);
            }
            for (name, value) in o.limits {
                let Some(limit) = Limit::ALL.iter().find(|l| l.as_str() == name) else {
                    return Err(format!("{id}.limits.{name} is not a limit"));
                };
                if value.is_some_and(|v| v < 0) {
                    return Err(format!("{id}.limits.{name} must not be negative"));
                }
                plan.limits.insert(limit.as_str(), value);
            }
        }
        Ok(catalogue)
    }

    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    pub fn get(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The plan of a plan id kept in the database; an id no longer in the catalogue reads
    /// as `free`, so a tenant is never stuck on a plan nobody can see.
    pub fn effective(&self, id: &str) -> &Plan {
        self.get(id).unwrap_or_else(|| self.free())
    }

    pub fn free(&self) -> &Plan {
        self.get(FREE)
            .expect("the catalogue always has the free plan")
    }

    /// The plan a Stripe price subscribes to.
    pub fn by_price(&self, price: &str) -> Option<&Plan> {
        self.plans
            .iter()
            .find(|p| p.stripe_price_id.as_deref() == Some(price))
    }

    /// The plan's place in the catalogue (a tie between two states never moves down).
    pub fn rank(&self, id: &str) -> usize {
        self.plans.iter().position(|p| p.id == id).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_typos_are_refused() {
        let c = Catalogue::with_overrides(
            r#"{"team": {"stripe_price_id": "price_team", "limits": {"members": 20, "bank_connections": null}}}"#,
        )
        .unwrap();
        let team = c.get("team").unwrap();
        assert_eq!(team.limit(Limit::Members), Some(20));
        assert_eq!(team.limit(Limit::BankConnections), None);
        assert_eq!(team.limit(Limit::TransactionsPerMonth), Some(20_000));
        assert_eq!(c.by_price("price_team").unwrap().id, "team");
        for bad in [
            r#"{"gold": {}}"#,
            r#"{"team": {"limits": {"seats": 1}}}"#,
            r#"{"team": {"limits": {"members": -1}}}"#,
            r#"{"free": {"stripe_price_id": "price_x"}}"#,
            r#"{"team": {"stripe_price_id": "prod_x"}}"#,
            r#"{"team": {"colour": "red"}}"#,
            "not json",
        ] {
            assert!(Catalogue::with_overrides(bad).is_err(), "{bad}");
        }
        assert_eq!(c.effective("retired").id, FREE);
    }
}
