//! Budget periods: weekly, monthly, quarterly or yearly steps from an anchor date (the
//! first day of the first period: a Monday, the 1st, a fiscal year's 1 April). A month
//! step from an anchor on the 31st lands on the last day of shorter months, always counted
//! from the anchor so it never drifts.

use chrono::{Datelike, Months, NaiveDate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        Some(match text {
            "weekly" => Period::Weekly,
            "monthly" => Period::Monthly,
            "quarterly" => Period::Quarterly,
            "yearly" => Period::Yearly,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Quarterly => "quarterly",
            Period::Yearly => "yearly",
        }
    }

    fn months(self) -> u32 {
        match self {
            Period::Weekly => 0,
            Period::Monthly => 1,
            Period::Quarterly => 3,
            Period::Yearly => 12,
        }
    }

    /// The start of the `n`th period from `anchor` (negative: before it).
    pub fn nth(self, anchor: NaiveDate, n: i64) -> NaiveDate {
        if self == Period::Weekly {
            return anchor + chrono::Duration::days(7 * n);
        }
        let months = self.months() as i64 * n;
        if months >= 0 {
            anchor
                .checked_add_months(Months::new(months as u32))
                .unwrap_or(NaiveDate::MAX)
        } else {
            anchor
                .checked_sub_months(Months::new((-months) as u32))
                .unwrap_or(NaiveDate::MIN)
        }
    }

    /// The index of the period holding `date`.
    pub fn index_of(self, anchor: NaiveDate, date: NaiveDate) -> i64 {
        let mut n = if self == Period::Weekly {
            (date - anchor).num_days().div_euclid(7)
        } else {
            let months = (date.year() as i64 - anchor.year() as i64) * 12 + date.month() as i64
                - anchor.month() as i64;
            months.div_euclid(self.months() as i64)
        };
        // Month arithmetic is only a first guess near the anchor's day: settle it.
        while self.nth(anchor, n) > date {
            n -= 1;
        }
        while self.nth(anchor, n + 1) <= date {
            n += 1;
        }
        n
    }

    /// The period holding `date`: its first day and the day after its last.
    pub fn containing(self, anchor: NaiveDate, date: NaiveDate) -> (NaiveDate, NaiveDate) {
        let n = self.index_of(anchor, date);
        (self.nth(anchor, n), self.nth(anchor, n + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn periods_step_from_the_anchor() {
        let fiscal = d("2026-04-01");
        assert_eq!(
            Period::Yearly.containing(fiscal, d("2027-03-31")),
            (d("2026-04-01"), d("2027-04-01"))
        );
        assert_eq!(
            Period::Yearly.containing(fiscal, d("2027-04-01")),
            (d("2027-04-01"), d("2028-04-01"))
        );
        assert_eq!(
            Period::Yearly.containing(fiscal, d("2026-01-15")),
            (d("2025-04-01"), d("2026-04-01"))
        );
        assert_eq!(
            Period::Quarterly.containing(fiscal, d("2026-12-31")),
            (d("2026-10-01"), d("2027-01-01"))
        );
        let monday = d("2026-11-30");
        assert_eq!(
            Period::Weekly.containing(monday, d("2026-12-06")),
            (d("2026-11-30"), d("2026-12-07"))
        );
        assert_eq!(
            Period::Weekly.containing(monday, d("2026-11-29")),
            (d("2026-11-23"), d("2026-11-30"))
        );
        // From the 31st: the last day of shorter months, never drifting.
        let end = d("2026-01-31");
        assert_eq!(
            Period::Monthly.containing(end, d("2026-03-01")),
            (d("2026-02-28"), d("2026-03-31"))
        );
        assert_eq!(
            Period::Monthly.containing(end, d("2026-02-27")),
            (d("2026-01-31"), d("2026-02-28"))
        );
        assert_eq!(Period::Monthly.nth(end, 4), d("2026-05-31"));
        assert_eq!(
            Period::Monthly.containing(d("2026-01-01"), d("2026-12-01")),
            (d("2026-12-01"), d("2027-01-01"))
        );
    }
}
