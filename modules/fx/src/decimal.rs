//! Exact decimals for rates and conversions: a rate is `mantissa / 10^scale` (the ECB's
//! strings, parsed digit by digit, never through a float), and a conversion is one integer
//! fraction rounded once, half to even, to the target's minor units.

/// A positive decimal `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub mantissa: i128,
    pub scale: u32,
}

impl Rate {
    /// Parses `1.1172`, `175.68`, `136`: digits with at most one point, positive, at most
    /// 12 digits after the point and 24 in all.
    pub fn parse(text: &str) -> Option<Rate> {
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, f),
            None => (text, ""),
        };
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            || frac.len() > 12
            || int.len() + frac.len() > 24
        {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa * 10 + i128::from(b - b'0');
        }
        (mantissa > 0).then_some(Rate {
            mantissa,
            scale: frac.len() as u32,
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.mantissa.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&digits);
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{int}.{frac}")
    }
}

/// `numerator / denominator` rounded half to even (denominator positive).
pub fn div_half_even(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator > 0);
    let (q, r) = (
        numerator.div_euclid(denominator),
        numerator.rem_euclid(denominator),
    );
    // q is the floor; r in [0, denominator).
    match (2 * r).cmp(&denominator) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => {
            if q % 2 == 0 {
                q
            } else {
                q + 1
            }
        }
    }
}

/// `amount` minor units of a currency with `from_exp` digits, worth `amount / 10^from_exp /
/// from_rate` euros, in minor units of one with `to_exp` digits at `to_rate` per euro: one
/// fraction, one rounding. `None` on overflow.
pub fn convert(
    amount: i64,
    from_exp: u8,
    from_rate: Rate,
    to_exp: u8,
    to_rate: Rate,
) -> Option<i64> {
    let pow = |e: u32| 10i128.checked_pow(e);
    // amount · (mY/10^sY) · 10^eY / ((mX/10^sX) · 10^eX)
    let numerator = i128::from(amount)
        .checked_mul(to_rate.mantissa)?
        .checked_mul(pow(from_rate.scale)?)?
        .checked_mul(pow(u32::from(to_exp))?)?;
    let denominator = from_rate
        .mantissa
        .checked_mul(pow(to_rate.scale)?)?
        .checked_mul(pow(u32::from(from_exp))?)?;
    i64::try_from(div_half_even(numerator, denominator)).ok()
}

/// The cross rate `to_rate / from_rate` (quote per base) as a decimal string with
/// `digits` digits after the point, rounded half to even.
pub fn cross(from_rate: Rate, to_rate: Rate, digits: u32) -> Option<Rate> {
    let numerator = to_rate
        .mantissa
        .checked_mul(10i128.checked_pow(from_rate.scale)?)?
        .checked_mul(10i128.checked_pow(digits)?)?;
    let denominator = from_rate
        .mantissa
        .checked_mul(10i128.checked_pow(to_rate.scale)?)?;
    let mut mantissa = div_half_even(numerator, denominator);
    let mut scale = digits;
    // Trailing zeros say nothing.
    while scale > 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        scale -= 1;
    }
    (mantissa > 0).then_some(Rate { mantissa, scale })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn rates_parse_exactly_and_print_back() {
        assert_eq!(
            r("1.1172"),
            Rate {
                mantissa: 11172,
                scale: 4
            }
        );
        assert_eq!(
            r("136"),
            Rate {
                mantissa: 136,
                scale: 0
            }
        );
        assert_eq!(r("0.58231").to_string(), "0.58231");
        assert_eq!(r("20275.17").to_string(), "20275.17");
        for bad in ["", ".", "N/A", "-1.2", "1.2.3", "0", "0.000", "1e5", " 1.2"] {
            assert!(Rate::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn half_even_rounds_ties_to_the_even_neighbour() {
        assert_eq!(div_half_even(5, 2), 2);
        assert_eq!(div_half_even(7, 2), 4);
        assert_eq!(div_half_even(-5, 2), -2);
        assert_eq!(div_half_even(-7, 2), -4);
        assert_eq!(div_half_even(10, 3), 3);
        assert_eq!(div_half_even(-10, 3), -3);
        assert_eq!(div_half_even(11, 3), 4);
    }

    #[test]
    fn conversions_match_the_hand_computed_figures() {
        let eur = r("1");
        // 100.00 EUR at 1.1172 USD per EUR: 111.72 USD.
        assert_eq!(convert(10_000, 2, eur, 2, r("1.1172")), Some(11_172));
        // 100.00 USD to EUR: 10000 / 1.1172 = 8950.94…: 89.51 EUR.
        assert_eq!(convert(10_000, 2, r("1.1172"), 2, eur), Some(8_951));
        // 1,000 JPY (no minor units) to USD at 175.68 JPY and 1.1172 USD per EUR:
        // 1000 · 1.1172 / 175.68 = 6.3593…: 6.36 USD.
        assert_eq!(convert(1_000, 0, r("175.68"), 2, r("1.1172")), Some(636));
        // 12.34 USD to JPY: 12.34 · 175.68 / 1.1172 = 1940.46…: 1940 JPY.
        assert_eq!(convert(1_234, 2, r("1.1172"), 0, r("175.68")), Some(1_940));
        // An exact tie rounds to even: 0.25 EUR at 0.5 → 0.125 → 0.12; 0.35 → 0.175 → 0.18.
        assert_eq!(convert(25, 2, eur, 2, r("0.5")), Some(12));
        assert_eq!(convert(35, 2, eur, 2, r("0.5")), Some(18));
        // Spending is negative and rounds alike.
        assert_eq!(convert(-25, 2, eur, 2, r("0.5")), Some(-12));
        assert_eq!(convert(i64::MAX, 2, r("0.0001"), 3, r("99999999")), None);
    }

    #[test]
    fn cross_rates_go_through_the_euro() {
        // GBP per USD on 2026-10-30: 0.8338 / 1.1172.
        assert_eq!(
            cross(r("1.1172"), r("0.8338"), 8).unwrap().to_string(),
            "0.74633011"
        );
        assert_eq!(cross(r("1"), r("1.1172"), 8).unwrap().to_string(), "1.1172");
    }
}
