//! From the file's bytes to rows ready for the ledger, without the database: decode (BOM,
//! strict UTF-8, the declared charset, a guess), detect the format, parse, then validate
//! each row against the target account (currency, precision, dates, the statement's IBAN)
//! and give it its fingerprint. Pure, so every fixture is tested here row by row.

use chrono::{Datelike, NaiveDate};
use kernel::Currency;
use ledger::{Fingerprint, Incoming, Ordinals, TransactionStatus};
use uuid::Uuid;

use crate::formats::{
    self, Format, FormatError, ParsedRow, Warning, camt, csv::Mapping, decode, mt940, ofx, qif,
};

/// The account rows go to.
#[derive(Debug, Clone)]
pub struct Target {
    pub account_id: Uuid,
    pub currency: Currency,
    /// Normalised (no spaces, upper case), when the account has one.
    pub iban: Option<String>,
}

/// A row of the file after validation.
#[derive(Debug, Clone)]
pub enum Staged {
    Ready {
        row: u32,
        incoming: Incoming,
        /// The category the file proposes, kept for the categorization step.
        category: Option<String>,
    },
    Rejected {
        row: u32,
        field: String,
        reason: String,
    },
}

impl Staged {
    pub fn row(&self) -> u32 {
        match self {
            Staged::Ready { row, .. } | Staged::Rejected { row, .. } => *row,
        }
    }
}

/// What reading a file gave.
#[derive(Debug, Clone)]
pub struct Reading {
    pub format: Format,
    /// The encoding the file was read in (`UTF-8`, `windows-1252`…).
    pub encoding: String,
    /// For CSV: the mapping used (given, or the preset's) and the preset's name.
    pub mapping: Option<Mapping>,
    pub preset: Option<String>,
    pub warnings: Vec<Warning>,
    pub rows: Vec<Staged>,
}

impl Reading {
    pub fn rejected(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r, Staged::Rejected { .. }))
            .count()
    }
}

/// The format of a file from its first bytes, or `None` when it is none Balance reads.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}');
    if camt::sniff(text) {
        Some(Format::Camt053)
    } else if ofx::sniff(text) {
        Some(Format::Ofx)
    } else if mt940::sniff(text) {
        Some(Format::Mt940)
    } else if qif::sniff(text) {
        Some(Format::Qif)
    } else if formats::csv::sniff(text) {
        Some(Format::Csv)
    } else {
        None
    }
}

/// Reads a whole file for `target`.
pub fn read(
    bytes: &[u8],
    format: Option<Format>,
    mapping: Option<&Mapping>,
    target: &Target,
) -> Result<Reading, FormatError> {
    let format = format.or_else(|| detect(bytes)).ok_or_else(|| {
        FormatError(
            "the file is none of the formats Balance reads (CSV, OFX/QFX, CAMT.053, MT940, QIF)"
                .into(),
        )
    })?;
    let head = &bytes[..bytes.len().min(1024)];
    let declared = match format {
        Format::Ofx => ofx::declared_charset(head),
        Format::Camt053 => camt::declared_charset(head),
        _ => None,
    };
    let override_label = mapping.and_then(|m| m.encoding.as_deref());
    let decoded = decode::decode(bytes, declared.as_deref(), override_label)?;
    let mut warnings = Vec::new();
    if let Some(w) = decoded.warning() {
        warnings.push(Warning {
            row: None,
            message: w,
        });
    }
    let text = decoded.text.as_str();
    let (parsed, used, preset) = match format {
        Format::Csv => {
            let (parsed, used, preset) = formats::csv::parse(text, mapping)?;
            (parsed, Some(used), preset.map(str::to_string))
        }
        Format::Ofx => (ofx::parse(text)?, None, None),
        Format::Camt053 => (camt::parse(text)?, None, None),
        Format::Mt940 => (mt940::parse(text)?, None, None),
        Format::Qif => (qif::parse(text)?, None, None),
    };
    check_statements(&parsed.statements, target, &mut warnings)?;
    warnings.extend(parsed.warnings);
    let mut ordinals = Ordinals::default();
    let mut rows = Vec::with_capacity(parsed.rows.len());
    for row in parsed.rows {
        rows.push(match row {
            Err(r) => Staged::Rejected {
                row: r.row,
                field: r.field,
                reason: r.reason,
            },
            Ok(row) => {
                let statement_currency = parsed
                    .statements
                    .get(row.statement)
                    .and_then(|s| s.currency.clone());
                validate(format, row, statement_currency, target, &mut ordinals)
            }
        });
    }
    if rows.is_empty() {
        return Err(FormatError("the file holds no transactions".into()));
    }
    Ok(Reading {
        format,
        encoding: decoded.encoding.to_string(),
        mapping: used,
        preset,
        warnings,
        rows,
    })
}

/// A statement for another IBAN than the account's fails the file; one the account cannot
/// be checked against is a warning.
fn check_statements(
    statements: &[formats::StatementInfo],
    target: &Target,
    warnings: &mut Vec<Warning>,
) -> Result<(), FormatError> {
    for s in statements {
        let Some(named) = s.account.as_deref() else {
            continue;
        };
        let normalised: String = named
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        let looks_like_iban = normalised.len() >= 15
            && normalised.chars().take(2).all(|c| c.is_ascii_alphabetic())
            && normalised
                .chars()
                .skip(2)
                .take(2)
                .all(|c| c.is_ascii_digit());
        if !looks_like_iban {
            continue;
        }
        match &target.iban {
            Some(iban) if *iban != normalised => {
                return Err(FormatError(format!(
                    "the file is a statement of IBAN {normalised}, but the account's IBAN is {iban}: choose the account it belongs to"
                )));
            }
            Some(_) => {}
            None => warnings.push(Warning {
                row: None,
                message: format!(
                    "the file is a statement of IBAN {normalised}; the account has no IBAN to check it against"
                ),
            }),
        }
    }
    Ok(())
}

/// The earliest and latest booking dates accepted.
fn plausible(date: NaiveDate) -> bool {
    (1900..=2100).contains(&date.year())
}

fn validate(
    format: Format,
    row: ParsedRow,
    statement_currency: Option<String>,
    target: &Target,
    ordinals: &mut Ordinals,
) -> Staged {
    let reject = |field: &str, reason: String| Staged::Rejected {
        row: row.row,
        field: field.to_string(),
        reason,
    };
    if let Some(code) = row.currency.clone().or(statement_currency) {
        match Currency::parse(code.trim()) {
            Ok(c) if c == target.currency => {}
            Ok(c) => {
                return reject(
                    "currency",
                    format!(
                        "the row is in {c}, the account in {}: an account's transactions are in its currency",
                        target.currency
                    ),
                );
            }
            Err(_) => {
                return reject(
                    "currency",
                    format!("`{}` is not an ISO 4217 currency code", code.trim()),
                );
            }
        }
    }
    let exponent = u32::from(target.currency.minor_units());
    let Some(amount) = row.amount.minor_units(exponent) else {
        return reject(
            "amount",
            format!(
                "has more decimals than {} has ({exponent}), or is out of range",
                target.currency
            ),
        );
    };
    if !plausible(row.date) {
        return reject(
            "date",
            format!("{} is not a plausible booking date", row.date),
        );
    }
    let merchant = row.merchant.map(|m| clean(&m)).filter(|m| !m.is_empty());
    let description = clean(&row.description);
    let text = bank_text(merchant.as_deref(), &description);
    let fingerprint: Fingerprint =
        ordinals.next(target.account_id, row.date, amount, target.currency, &text);
    Staged::Ready {
        row: row.row,
        category: row.category.map(|c| clean(&c)).filter(|c| !c.is_empty()),
        incoming: Incoming {
            date: row.date,
            value_date: row.value_date.filter(|d| plausible(*d)),
            amount,
            merchant: merchant.map(|m| m.chars().take(200).collect()),
            description: description.chars().take(1000).collect(),
            status: TransactionStatus::Posted,
            external_id: row
                .external_id
                .map(|e| clean(&e))
                .filter(|e| !e.is_empty())
                .map(|e| format!("{}:{e}", crate::domain::format_str(format))),
            fingerprint,
        },
    }
}

/// Text as stored: control characters (a NUL, which PostgreSQL's text refuses; line breaks
/// inside a field) become spaces, runs of spaces one, trimmed.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// The text a file row is fingerprinted by: its merchant and description as the bank wrote
/// them (the fingerprint normalises case, accents and spacing).
pub fn bank_text(merchant: Option<&str>, description: &str) -> String {
    match merchant {
        Some(m) => format!("{m} {description}"),
        None => description.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_stored_without_control_characters() {
        assert_eq!(clean(" Café\0 Bar\r\n  BERLIN \t"), "Café Bar BERLIN");
        assert_eq!(clean("\0\0"), "");
    }
}
