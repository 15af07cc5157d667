//! The file formats: each parser turns a decoded file into [`Parsed`] rows, one per
//! transaction the file states, or rejects a row it cannot read ([`Rejected`]), or refuses
//! the whole file ([`FormatError`]). Parsers know nothing of accounts, the database or
//! the fingerprint: validation against the account and dedup come after.

pub mod camt;
pub mod csv;
pub mod decode;
pub mod mt940;
pub mod ofx;
pub mod qif;

use chrono::NaiveDate;

/// A file format Balance reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Ofx,
    Camt053,
    Mt940,
    Qif,
}

/// What a parser read from a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The statements (accounts) the file names, in file order: an IBAN or account number
    /// and the statement's currency, when the file states them.
    pub statements: Vec<StatementInfo>,
    /// One entry per transaction row, in file order.
    pub rows: Vec<Result<ParsedRow, Rejected>>,
    /// Things a person should know that do not reject a row (a sign that disagrees with
    /// the entry type, a reversal, a skipped non-booked entry…), each with its row if any.
    pub warnings: Vec<Warning>,
}

/// A statement of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementInfo {
    /// As the file gives it: an IBAN (CAMT, MT940 `:25:`), an OFX `ACCTID`, a QIF `!Account` name.
    pub account: Option<String>,
    /// ISO 4217 code (OFX `CURDEF`, CAMT `Acct/Ccy`).
    pub currency: Option<String>,
}

/// One transaction as the file states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRow {
    /// Where the row is, for a person: the line of a CSV, MT940 or QIF file (1-based, of
    /// the row's first line), the ordinal of the entry in an OFX or CAMT file (1-based).
    pub row: u32,
    /// The booking date.
    pub date: NaiveDate,
    pub value_date: Option<NaiveDate>,
    /// Signed from the account holder's view: money out is negative.
    pub amount: Decimal,
    /// ISO 4217 code when the row or its statement states one.
    pub currency: Option<String>,
    /// The counterparty (payee, creditor of a debit, debtor of a credit), trimmed.
    pub merchant: Option<String>,
    /// The rest of the text (memo, purpose, remittance information), trimmed; may be empty.
    pub description: String,
    /// The provider's id of the transaction, unique within its account: OFX `FITID`, CAMT
    /// `AcctSvcrRef` (or `NtryRef`) with the detail index for a split batch, MT940 bank
    /// reference; none in CSV and QIF unless a column gives one (Monzo's `id`).
    pub external_id: Option<String>,
    /// The category the file proposes (QIF `L`, a CSV category column), as text.
    pub category: Option<String>,
    /// Index of the statement in [`Parsed::statements`] this row belongs to.
    pub statement: usize,
}

/// A row the parser could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub row: u32,
    /// The field at fault (`date`, `amount`, …) or `row` for the whole row.
    pub field: String,
    pub reason: String,
}

/// A note about the file or one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub row: Option<u32>,
    pub message: String,
}

/// Why a file cannot be read at all (truncated XML, not the format it claims…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// An exact decimal number as a file states it: `units × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub units: i128,
    pub scale: u32,
}

impl Decimal {
    /// The amount in minor units of a currency with `exponent` digits (2 for EUR, 0 for
    /// JPY): `None` when it has more significant fraction digits than the currency, or
    /// does not fit in an `i64`.
    pub fn minor_units(self, exponent: u32) -> Option<i64> {
        let mut units = self.units;
        let mut scale = self.scale;
        while scale > exponent {
            if units % 10 != 0 {
                return None;
            }
            units /= 10;
            scale -= 1;
        }
        let factor = 10i128.checked_pow(exponent - scale)?;
        i64::try_from(units.checked_mul(factor)?).ok()
    }

    /// The same number with the opposite sign.
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Decimal {
        Decimal {
            units: -self.units,
            scale: self.scale,
        }
    }

    pub fn is_negative(self) -> bool {
        self.units < 0
    }

    pub fn is_zero(self) -> bool {
        self.units == 0
    }
}

/// How a file writes its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalMark {
    /// `1,234.56`
    Point,
    /// `1.234,56`
    Comma,
}

/// Parses a money amount as banks write it: an optional sign (`-`, `+`, or a trailing
/// `-`), currency symbols or codes around it (`$`, `£`, `€`, `EUR`), spaces, thousands
/// separators, and `mark` as the decimal separator. `(12.50)` is negative. Anything else
/// (two decimal marks, letters inside the number, no digits) is `None`.
pub fn parse_decimal(text: &str, mark: DecimalMark) -> Option<Decimal> {
    let (point, thousands) = match mark {
        DecimalMark::Point => ('.', ','),
        DecimalMark::Comma => (',', '.'),
    };
    let mut s = text.trim();
    let mut negative = false;
    if s.starts_with('(') && s.ends_with(')') {
        negative = true;
        s = s[1..s.len() - 1].trim();
    }
    // Currency symbols and codes on either side.
    let strip = |s: &str| -> String {
        let t = s.trim_matches(|c: char| {
            matches!(c, '$' | '£' | '€' | '¥' | '\u{a0}' | ' ' | '\'' | '"')
                || c.is_ascii_uppercase()
        });
        t.to_string()
    };
    let mut body = strip(s);
    for _ in 0..2 {
        if let Some(rest) = body.strip_prefix('-') {
            negative = !negative;
            body = strip(rest);
        } else if let Some(rest) = body.strip_prefix('+') {
            body = strip(rest);
        } else if let Some(rest) = body.strip_suffix('-') {
            negative = !negative;
            body = strip(rest);
        }
    }
    if body.is_empty() {
        return None;
    }
    let mut units: i128 = 0;
    let mut scale: Option<u32> = None;
    let mut digits = 0;
    for c in body.chars() {
        if c.is_ascii_digit() {
            units = units
                .checked_mul(10)?
                .checked_add(i128::from(c as u8 - b'0'))?;
            digits += 1;
            if let Some(s) = scale.as_mut() {
                *s += 1;
            }
        } else if c == point && scale.is_none() {
            scale = Some(0);
        } else if (c == thousands || c == ' ' || c == '\u{a0}' || c == '\'') && scale.is_none() {
            continue;
        } else {
            return None;
        }
    }
    if digits == 0 || digits > 30 {
        return None;
    }
    Some(Decimal {
        units: if negative { -units } else { units },
        scale: scale.unwrap_or(0),
    })
}

/// A file of ../shared/fixtures/imports/ (tests only), or `None` with the skip notice
/// when the folder is absent.
#[cfg(test)]
pub(crate) fn fixture_bytes(name: &str) -> Option<Vec<u8>> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/imports"
    );
    if !std::path::Path::new(dir).is_dir() {
        eprintln!("skipped: ../shared/fixtures absent");
        return None;
    }
    Some(std::fs::read(format!("{dir}/{name}")).expect("a fixture of the folder"))
}

/// [`fixture_bytes`] as text, invalid UTF-8 replaced.
#[cfg(test)]
pub(crate) fn fixture_text(name: &str) -> Option<String> {
    fixture_bytes(name).map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(units: i128, scale: u32) -> Option<Decimal> {
        Some(Decimal { units, scale })
    }

    #[test]
    fn amounts_as_banks_write_them() {
        use DecimalMark::*;
        for (text, mark, want) in [
            ("-17,22", Comma, d(-1722, 2)),
            ("1.234,56", Comma, d(123456, 2)),
            ("+ £1,100.00", Point, d(110000, 2)),
            ("$1,234.00", Point, d(123400, 2)),
            ("-$12.50", Point, d(-1250, 2)),
            ("(12.50)", Point, d(-1250, 2)),
            ("12.50-", Point, d(-1250, 2)),
            ("2700", Point, d(2700, 0)),
            ("0.5", Point, d(5, 1)),
            ("EUR 3,00", Comma, d(300, 2)),
            ("12.3.4", Point, None),
            ("abc", Point, None),
            ("", Point, None),
            ("-", Point, None),
            ("1,2,3.4.5", Point, None),
        ] {
            assert_eq!(parse_decimal(text, mark), want, "{text}");
        }
    }

    #[test]
    fn minor_units_refuse_what_the_currency_cannot_hold() {
        let x = |units, scale| Decimal { units, scale };
        assert_eq!(x(1722, 2).minor_units(2), Some(1722));
        assert_eq!(x(17220, 3).minor_units(2), Some(1722));
        assert_eq!(x(17221, 3).minor_units(2), None);
        assert_eq!(x(2700, 0).minor_units(0), Some(2700));
        assert_eq!(x(5, 1).minor_units(2), Some(50));
        assert_eq!(x(-5, 0).minor_units(3), Some(-5000));
        assert_eq!(x(i128::MAX, 0).minor_units(2), None);
    }
}
