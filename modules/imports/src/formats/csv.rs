//! CSV exports: a [`Mapping`] says which column holds what; without one, the header row
//! is matched against known bank layouts ([`PRESETS`]) and then against common header
//! words in English and German (the generic recogniser).
//!
//! Rules that hold for every layout:
//! - Amounts are exact decimals, never `f64`. The decimal mark is the mapping's, else
//!   decided once per file from the amounts themselves (`-17,22` and `1.234,56` say comma).
//! - Dates are read in the mapping's `date_format` when it has one; otherwise each date is
//!   read by its shape: ISO `2024-01-31` (a time and offset after it are ignored, so a
//!   Monzo timestamp gives its own calendar day), `31.01.2024`, `31-Jan-2024`,
//!   `9 Feb 2021`, `Feb 9, 2021`, `20240131`. `01/02/2024` is ambiguous: the whole file is
//!   day-first when any first component is above 12, month-first when any second one is,
//!   and otherwise month-first for `/` and day-first for `-` (with a warning).
//! - Debit and credit columns: a debit is money out (negative), a credit money in.
//!   `sign: inverted` (card statements) makes positive amounts money out. A direction
//!   (`CR`/`DR`, `H`/`S`) in a `direction` column or after the amount wins over both.
//! - The text of the counterparty (a payee or `Empfänger` column) becomes the merchant;
//!   a bank's single description column stays the description (it is the bank's text,
//!   not a clean merchant name). Several description columns are joined with a space.
//! - Rows whose date cell says `Pending` are not booked yet: they are skipped with a
//!   warning (they come back, dated, in a later export). A line of binary bytes is
//!   rejected as a row; consecutive such lines are one rejection.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::decode::is_binary_char;
use super::{
    Decimal, DecimalMark, FormatError, Parsed, ParsedRow, Rejected, StatementInfo, Warning,
    parse_decimal,
};

/// Which way a positive amount goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sign {
    /// Positive is money in (bank accounts).
    #[default]
    Normal,
    /// Positive is money out (most card statements).
    Inverted,
}

/// The decimal mark of a file's amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecimalSeparator {
    /// `1,234.56`
    Point,
    /// `1.234,56`
    Comma,
}

impl From<DecimalSeparator> for DecimalMark {
    fn from(d: DecimalSeparator) -> DecimalMark {
        match d {
            DecimalSeparator::Point => DecimalMark::Point,
            DecimalSeparator::Comma => DecimalMark::Comma,
        }
    }
}

impl From<DecimalMark> for DecimalSeparator {
    fn from(d: DecimalMark) -> DecimalSeparator {
        match d {
            DecimalMark::Point => DecimalSeparator::Point,
            DecimalMark::Comma => DecimalSeparator::Comma,
        }
    }
}

/// Which comes first in a date like `01/02/2024`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateOrder {
    /// `DD/MM/YYYY`
    DayFirst,
    /// `MM/DD/YYYY`
    MonthFirst,
}

/// How to read a CSV file: which column holds what, and how its numbers and dates are
/// written. A column is named by its header text (matched without regard to case or
/// surrounding spaces) or by its 0-based position written `#3` (the fourth column);
/// without a header row only positions can be used.
///
/// As JSON: `{"date": "Buchungstag", "date_format": "%d.%m.%Y", "amount": "Betrag",
/// "decimal": "comma", "merchant": "Auftraggeber/Empfänger", "description":
/// ["Verwendungszweck"]}`. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The booking date's column (required).
    pub date: String,
    /// A chrono strftime pattern such as `%d.%m.%Y` or `%Y-%m-%d %H:%M:%S %z`; absent:
    /// each date is read by its shape, the day/month order decided per file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_format: Option<String>,
    /// Without `date_format`: the order for dates like `01/02/2024`; absent: decided per
    /// file (and filled in the mapping [`parse`] returns when the file decided it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_order: Option<DateOrder>,
    /// The value date's column (`Wertstellung`), read like `date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_date: Option<String>,
    /// A signed amount's column. Give either this or `debit`/`credit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// The column of money out (`Withdrawal`, `Soll`); its amounts become negative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debit: Option<String>,
    /// The column of money in (`Deposit`, `Haben`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<String>,
    /// A column that says which way the money went: `CR`, `C`, `Credit`, `H`, `Haben`,
    /// `+` mean money in; `DR`, `D`, `Debit`, `S`, `Soll`, `-` money out; empty leaves the
    /// amount's own sign (after `sign`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// `inverted` when positive amounts are money out (card statements); with `debit` and
    /// `credit` columns it swaps their meaning. A direction mark wins over it.
    #[serde(default)]
    pub sign: Sign,
    /// `point` or `comma`; absent: decided per file from the amounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal: Option<DecimalSeparator>,
    /// The thousands separator, when it is not the usual one for the decimal mark
    /// (`'`, a space); `.` or `,` alone also fixes the decimal mark to the other one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thousands: Option<char>,
    /// An ISO 4217 currency column. Without one, a currency written with the amount
    /// (`£`, `€`, `EUR`) or in the amount's header (`Betrag (EUR)`) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The counterparty's column (payee, `Auftraggeber/Empfänger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    /// Columns of text joined with a space into the description; a single column may be
    /// given as a string.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub description: Vec<String>,
    /// The provider's transaction id column (Monzo `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The column of the category the bank proposes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// A column holding the account's own number or IBAN (Commerzbank `IBAN
    /// Auftraggeberkonto`, GLS `Kontonummer`): each value becomes a statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Lines before the header (or before the first row without a header).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip_rows: u32,
    /// The field separator; absent: detected ([`detect_delimiter`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
    /// An encoding label (`windows-1252`, `latin1`, `utf-8`) that overrides detection
    /// when the file is decoded ([`super::decode::decode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Whether the first line (after `skip_rows`) is a header; absent means yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_header: Option<bool>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `"description": "Memo"` or `"description": ["Memo", "Notes"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a column or a list of columns")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(vec![s.to_owned()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A column reference: a header name or a 0-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Col {
    Name(String),
    Index(usize),
}

fn column_ref(text: &str) -> Result<Col, String> {
    let t = text.trim();
    match t.strip_prefix('#') {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
            .parse()
            .map(Col::Index)
            .map_err(|_| format!("`{t}` is not a column position")),
        _ if t.is_empty() => Err("a column name (or `#0` for the first column) is required".into()),
        _ => Ok(Col::Name(t.to_owned())),
    }
}

impl Mapping {
    /// Whether the file has a header row (`has_header`, absent meaning yes).
    pub fn header(&self) -> bool {
        self.has_header.unwrap_or(true)
    }

    /// Every column the mapping names, with its field name.
    fn columns(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("date", self.date.as_str())];
        for (field, col) in [
            ("value_date", &self.value_date),
            ("amount", &self.amount),
            ("debit", &self.debit),
            ("credit", &self.credit),
            ("direction", &self.direction),
            ("currency", &self.currency),
            ("merchant", &self.merchant),
            ("external_id", &self.external_id),
            ("category", &self.category),
            ("account", &self.account),
        ] {
            if let Some(c) = col {
                out.push((field, c.as_str()));
            }
        }
        out.extend(self.description.iter().map(|c| ("description", c.as_str())));
        out
    }

    fn columns_mut(&mut self) -> Vec<&mut String> {
        let mut out = vec![&mut self.date];
        for c in [
            &mut self.value_date,
            &mut self.amount,
            &mut self.debit,
            &mut self.credit,
            &mut self.direction,
            &mut self.currency,
            &mut self.merchant,
            &mut self.external_id,
            &mut self.category,
            &mut self.account,
        ]
        .into_iter()
        .flatten()
        {
            out.push(c);
        }
        out.extend(self.description.iter_mut());
        out
    }

    /// Checks what can be checked without a file: `Err("field: reason")`.
    pub fn check(&self) -> Result<(), String> {
        for (field, col) in self.columns() {
            match column_ref(col) {
                Err(e) => return Err(format!("{field}: {e}")),
                Ok(Col::Name(name)) if !self.header() => {
                    return Err(format!(
                        "{field}: without a header row, columns are named by position \
                         (`#0` is the first), not `{name}`"
                    ));
                }
                Ok(_) => {}
            }
        }
        match (&self.amount, &self.debit, &self.credit) {
            (Some(_), None, None) | (None, Some(_), _) | (None, _, Some(_)) => {}
            (Some(_), _, _) => {
                return Err(
                    "amount: give an `amount` column or `debit`/`credit` columns, not both".into(),
                );
            }
            (None, None, None) => {
                return Err(
                    "amount: an `amount` column, or `debit` and `credit` columns, is required"
                        .into(),
                );
            }
        }
        if let Some(fmt) = &self.date_format {
            check_date_format(fmt).map_err(|e| format!("date_format: {e}"))?;
            if self.date_order.is_some() {
                return Err("date_order: not used together with date_format".into());
            }
        }
        if let Some(t) = self.thousands {
            if t.is_alphanumeric() || t == '-' || t == '+' {
                return Err(format!("thousands: `{t}` cannot separate thousands"));
            }
            let clash = matches!(
                (self.decimal, t),
                (Some(DecimalSeparator::Point), '.') | (Some(DecimalSeparator::Comma), ',')
            );
            if clash {
                return Err(format!("thousands: `{t}` is also the decimal mark"));
            }
            if self.delimiter == Some(t) {
                return Err(format!("thousands: `{t}` is also the delimiter"));
            }
        }
        if let Some(d) = self.delimiter {
            let ok = d == '\t' || (d.is_ascii_punctuation() && d != '"');
            if !ok {
                return Err(format!(
                    "delimiter: `{}` cannot separate fields (use a punctuation mark or a tab)",
                    d.escape_default()
                ));
            }
        }
        if let Some(label) = &self.encoding {
            let known = encoding_rs::Encoding::for_label(label.trim().as_bytes())
                .is_some_and(|e| e != encoding_rs::REPLACEMENT);
            if !known {
                return Err(format!("encoding: `{label}` is not an encoding label"));
            }
        }
        Ok(())
    }
}

/// A date format must be valid strftime and give back a whole date.
fn check_date_format(fmt: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    use std::fmt::Write;
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{fmt}` is not a strftime pattern"));
    }
    let sample = DateTime::parse_from_rfc3339("2024-11-23T14:05:09+01:00")
        .map_err(|_| "internal sample".to_string())?;
    let mut text = String::new();
    write!(
        text,
        "{}",
        sample.format_with_items(StrftimeItems::new(fmt))
    )
    .map_err(|_| format!("`{fmt}` cannot be read"))?;
    match parse_with_format(&text, fmt) {
        Some(d) if d == sample.date_naive() => Ok(()),
        _ => Err(format!(
            "`{fmt}` does not give a whole date (day, month and year)"
        )),
    }
}

/// A known export layout, as data: the header cells that identify it and the mapping that
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// What the import reports as the recognised layout.
    pub name: &'static str,
    /// Header cells that must all be present (without regard to case or surrounding
    /// space); one `*` in a cell matches any text (`Paid Out (*)`).
    pub header: &'static [&'static str],
    /// The [`Mapping`] as JSON, as a person would save it. A column written exactly as
    /// a `header` pattern with a `*` stands for the header cell that pattern matched.
    /// Columns beyond `header` (a category, notes, the own account) are optional: left
    /// out when the file's header lacks them.
    pub mapping: &'static str,
}

/// The layouts recognised without a mapping. The one whose header cells all appear and
/// which names the most of them wins.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "schwab",
        header: &[
            "Date",
            "Status",
            "Type",
            "CheckNumber",
            "Description",
            "Withdrawal",
            "Deposit",
            "RunningBalance",
        ],
        mapping: r#"{"date": "Date", "date_format": "%m/%d/%Y", "debit": "Withdrawal",
            "credit": "Deposit", "decimal": "point", "description": ["Description"]}"#,
    },
    Preset {
        name: "capital_one",
        header: &[
            "Transaction Date",
            "Posted Date",
            "Card No.",
            "Description",
            "Category",
            "Debit",
            "Credit",
        ],
        mapping: r#"{"date": "Transaction Date", "value_date": "Posted Date",
            "date_format": "%Y-%m-%d", "debit": "Debit", "credit": "Credit",
            "decimal": "point", "description": ["Description"], "category": "Category"}"#,
    },
    Preset {
        name: "commerzbank",
        header: &[
            "Buchungstag",
            "Wertstellung",
            "Umsatzart",
            "Buchungstext",
            "Betrag",
            "Währung",
        ],
        mapping: r#"{"date": "Buchungstag", "value_date": "Wertstellung",
            "date_format": "%d.%m.%Y", "amount": "Betrag", "decimal": "comma",
            "currency": "Währung", "description": ["Buchungstext"],
            "account": "IBAN Auftraggeberkonto"}"#,
    },
    Preset {
        name: "gls",
        header: &[
            "Kontonummer",
            "Buchungstag",
            "Wertstellung",
            "Auftraggeber/Empfänger",
            "Buchungstext",
            "VWZ1",
            "Betrag",
            "Kontostand",
            "Währung",
        ],
        mapping: r#"{"date": "Buchungstag", "value_date": "Wertstellung",
            "date_format": "%d.%m.%Y", "amount": "Betrag", "decimal": "comma",
            "currency": "Währung", "merchant": "Auftraggeber/Empfänger",
            "description": ["VWZ1", "VWZ2", "VWZ3", "VWZ4", "VWZ5", "VWZ6", "VWZ7", "VWZ8",
                "VWZ9", "VWZ10", "VWZ11", "VWZ12", "VWZ13", "VWZ14"],
            "account": "Kontonummer"}"#,
    },
    Preset {
        name: "ms_bank_card",
        header: &["Date Processed", "Description", "Amount"],
        mapping: r##"{"date": "Date Processed", "date_format": "%d-%b-%Y", "amount": "Amount",
            "sign": "inverted", "direction": "#3", "decimal": "point",
            "description": ["Description"]}"##,
    },
    Preset {
        name: "monzo",
        header: &[
            "id",
            "created",
            "amount",
            "currency",
            "local_amount",
            "local_currency",
            "category",
            "description",
        ],
        mapping: r#"{"date": "created", "date_format": "%Y-%m-%d %H:%M:%S %z",
            "amount": "amount", "decimal": "point", "currency": "currency",
            "description": ["description", "notes"], "category": "category",
            "external_id": "id"}"#,
    },
    Preset {
        name: "n26",
        header: &[
            "Datum",
            "Empfänger",
            "Kontonummer",
            "Transaktionstyp",
            "Verwendungszweck",
            "Betrag (EUR)",
        ],
        mapping: r#"{"date": "Datum", "date_format": "%Y-%m-%d", "amount": "Betrag (EUR)",
            "decimal": "point", "merchant": "Empfänger", "description": ["Verwendungszweck"],
            "category": "Kategorie"}"#,
    },
    Preset {
        name: "revolut_legacy",
        header: &[
            "Completed Date",
            "Description",
            "Paid Out (*)",
            "Paid In (*)",
            "Balance (*)",
        ],
        mapping: r#"{"date": "Completed Date", "date_format": "%d %b %Y",
            "debit": "Paid Out (*)", "credit": "Paid In (*)", "decimal": "point",
            "description": ["Description", "Notes"], "category": "Category"}"#,
    },
    Preset {
        name: "de_giro",
        header: &[
            "Buchungstag",
            "Wertstellung",
            "Buchungstext",
            "Auftraggeber/Empfänger",
            "Verwendungszweck",
            "Betrag",
            "Währung",
        ],
        mapping: r#"{"date": "Buchungstag", "value_date": "Wertstellung",
            "date_format": "%d.%m.%Y", "amount": "Betrag", "decimal": "comma",
            "currency": "Währung", "merchant": "Auftraggeber/Empfänger",
            "description": ["Verwendungszweck"]}"#,
    },
    Preset {
        name: "basic",
        header: &["date", "description", "amount", "currency"],
        mapping: r#"{"date": "date", "amount": "amount", "currency": "currency",
            "description": ["description"]}"#,
    },
];

/// Header words of the generic recogniser, best first within each role. Matched against
/// a header cell lower-cased, with a currency suffix like ` (EUR)` removed.
const WORDS: &[(Role, &[&str])] = &[
    (
        Role::Date,
        &[
            "buchungstag",
            "buchungsdatum",
            "booking date",
            "transaction date",
            "trans. date",
            "date",
            "datum",
            "completed date",
            "posting date",
            "posted date",
            "date posted",
            "started date",
            "created",
            "belegdatum",
        ],
    ),
    (
        Role::ValueDate,
        &[
            "wertstellung",
            "wertstellungsdatum",
            "valuta",
            "valutadatum",
            "value date",
        ],
    ),
    (
        Role::Amount,
        &[
            "amount",
            "betrag",
            "transaction amount",
            "umsatz",
            "betrag in eur",
        ],
    ),
    (
        Role::Debit,
        &[
            "debit",
            "debits",
            "debit amount",
            "withdrawal",
            "withdrawals",
            "paid out",
            "money out",
            "out",
            "soll",
            "ausgang",
            "ausgaben",
            "belastung",
        ],
    ),
    (
        Role::Credit,
        &[
            "credit",
            "credits",
            "credit amount",
            "deposit",
            "deposits",
            "paid in",
            "money in",
            "in",
            "haben",
            "eingang",
            "einnahmen",
        ],
    ),
    (
        Role::Merchant,
        &[
            "payee",
            "merchant",
            "counterparty",
            "name",
            "auftraggeber/empfänger",
            "empfänger",
            "zahlungsempfänger",
            "begünstigter/zahlungspflichtiger",
            "beguenstigter/zahlungspflichtiger",
            "name zahlungsbeteiligter",
            "auftraggeber",
        ],
    ),
    (
        Role::Description,
        &[
            "description",
            "transaction description",
            "memo",
            "details",
            "narrative",
            "reference",
            "purpose",
            "verwendungszweck",
            "vorgang/verwendungszweck",
            "buchungstext",
            "notes",
        ],
    ),
    (
        Role::Currency,
        &["currency", "währung", "waehrung", "ccy", "currency code"],
    ),
    (Role::Category, &["category", "kategorie"]),
    (
        Role::ExternalId,
        &["transaction id", "transaktions-id", "transaction_id", "id"],
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Date,
    ValueDate,
    Amount,
    Debit,
    Credit,
    Merchant,
    Description,
    Currency,
    Category,
    ExternalId,
}

/// A header cell as compared: trimmed, lower-cased, inner spaces collapsed.
fn norm(cell: &str) -> String {
    cell.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn glob(pattern: &str, cell: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            cell.len() >= head.len() + tail.len() && cell.starts_with(head) && cell.ends_with(tail)
        }
        None => pattern == cell,
    }
}

/// The preset whose header cells all appear in `header`, naming the most of them; its
/// mapping with wildcard columns resolved to the header's own text, and the optional
/// columns the header lacks left out.
fn preset_for(header: &[String]) -> Option<(&'static str, Mapping)> {
    let cells: Vec<String> = header.iter().map(|c| norm(c)).collect();
    let mut best: Option<(&Preset, Vec<usize>)> = None;
    for preset in PRESETS {
        let found: Option<Vec<usize>> = preset
            .header
            .iter()
            .map(|p| {
                let p = norm(p);
                cells.iter().position(|c| glob(&p, c))
            })
            .collect();
        if let Some(found) = found
            && best
                .as_ref()
                .is_none_or(|(b, _)| preset.header.len() > b.header.len())
        {
            best = Some((preset, found));
        }
    }
    let (preset, found) = best?;
    let mut mapping: Mapping = serde_json::from_str(preset.mapping).ok()?;
    for col in mapping.columns_mut() {
        let n = norm(col);
        if let Some(i) = preset
            .header
            .iter()
            .position(|p| p.contains('*') && norm(p) == n)
        {
            *col = header[found[i]].trim().to_owned();
        }
    }
    // The other columns a preset names are optional: an export without them still reads.
    let present = |col: &String| match column_ref(col) {
        Ok(Col::Name(name)) => cells.contains(&norm(&name)),
        _ => true,
    };
    for col in [
        &mut mapping.value_date,
        &mut mapping.direction,
        &mut mapping.currency,
        &mut mapping.merchant,
        &mut mapping.external_id,
        &mut mapping.category,
        &mut mapping.account,
    ] {
        if col.as_ref().is_some_and(|c| !present(c)) {
            *col = None;
        }
    }
    mapping.description.retain(present);
    Some((preset.name, mapping))
}

/// Strips a currency suffix such as ` (EUR)` for word matching.
fn without_currency(cell: &str) -> &str {
    match header_currency(cell) {
        Some(_) => cell.rfind('(').map_or(cell, |i| cell[..i].trim_end()),
        None => cell,
    }
}

/// The generic recogniser: a date column and an amount (or debit/credit) column named by
/// common header words.
fn generic_for(header: &[String]) -> Option<Mapping> {
    let cells: Vec<String> = header.iter().map(|c| norm(c)).collect();
    let words = |role: Role| {
        WORDS
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(&[][..], |w| w.1)
    };
    let name = |i: usize| -> String {
        let text = header[i].trim();
        let unique = cells.iter().filter(|c| **c == cells[i]).count() == 1;
        if unique && !text.is_empty() {
            text.to_owned()
        } else {
            format!("#{i}")
        }
    };
    let mut taken = vec![false; cells.len()];
    let pick = |role: Role, taken: &mut Vec<bool>| -> Option<usize> {
        for word in words(role) {
            if let Some(i) =
                (0..cells.len()).find(|i| !taken[*i] && without_currency(&cells[*i]) == *word)
            {
                taken[i] = true;
                return Some(i);
            }
        }
        None
    };
    let date = pick(Role::Date, &mut taken)?;
    let value_date = pick(Role::ValueDate, &mut taken);
    let amount = pick(Role::Amount, &mut taken);
    let (debit, credit) = if amount.is_none() {
        (
            pick(Role::Debit, &mut taken),
            pick(Role::Credit, &mut taken),
        )
    } else {
        (None, None)
    };
    if amount.is_none() && debit.is_none() && credit.is_none() {
        return None;
    }
    let merchant = pick(Role::Merchant, &mut taken);
    let currency = pick(Role::Currency, &mut taken);
    let category = pick(Role::Category, &mut taken);
    let external_id = pick(Role::ExternalId, &mut taken);
    let has_purpose = cells.iter().any(|c| c == "verwendungszweck");
    let description: Vec<String> = (0..cells.len())
        .filter(|i| !taken[*i])
        .filter(|i| {
            let c = without_currency(&cells[*i]);
            words(Role::Description).contains(&c) && !(has_purpose && c == "buchungstext")
        })
        .map(&name)
        .collect();
    Some(Mapping {
        date: name(date),
        value_date: value_date.map(&name),
        amount: amount.map(&name),
        debit: debit.map(&name),
        credit: credit.map(&name),
        merchant: merchant.map(&name),
        currency: currency.map(&name),
        category: category.map(&name),
        external_id: external_id.map(&name),
        description,
        ..Mapping::default()
    })
}

/// The delimiters [`detect_delimiter`] knows, in the order that breaks a tie: a comma is
/// last, as it also appears in numbers (`-17,22`) and text.
const DELIMITERS: [u8; 4] = [b';', b'\t', b'|', b','];

/// The field separator of a CSV text: of `,` `;` tab `|`, the one that occurs the same
/// number of times on the most of the first 30 lines (outside quotes), more often per
/// line breaking ties, then `;`, tab, `|`, `,` in that order; `,` when none occurs.
pub fn detect_delimiter(text: &str) -> u8 {
    let lines = count_per_line(text, &DELIMITERS, 30);
    let mut best: Option<((usize, usize), u8)> = None;
    for (k, candidate) in DELIMITERS.iter().enumerate() {
        let column: Vec<usize> = lines.iter().map(|l| l[k]).collect();
        // The most frequent non-zero count, the larger on a tie.
        let mut mode = (0usize, 0usize);
        for n in column.iter().copied().filter(|n| *n > 0) {
            let same = column.iter().filter(|m| **m == n).count();
            if (same, n) > mode {
                mode = (same, n);
            }
        }
        if mode.1 > 0 && best.is_none_or(|(score, _)| mode > score) {
            best = Some((mode, *candidate));
        }
    }
    best.map_or(b',', |(_, c)| c)
}

/// Per line (a quoted field may span lines), how often each candidate occurs outside
/// quotes. A quote opens a quoted field only at the start of a field, as csv reads it.
fn count_per_line(text: &str, candidates: &[u8], max_lines: usize) -> Vec<[usize; 4]> {
    let mut lines = Vec::new();
    let mut current = [0usize; 4];
    let mut seen = false;
    let mut in_quotes = false;
    let mut field_start = true;
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        if in_quotes {
            if b == b'"' {
                if bytes.peek() == Some(&b'"') {
                    bytes.next();
                } else {
                    in_quotes = false;
                }
            }
            continue;
        }
        match b {
            b'\n' => {
                if seen {
                    lines.push(current);
                    if lines.len() >= max_lines {
                        return lines;
                    }
                }
                current = [0; 4];
                seen = false;
                field_start = true;
            }
            b'"' if field_start => {
                in_quotes = true;
                seen = true;
                field_start = false;
            }
            b' ' | b'\r' => {}
            _ => {
                if let Some(k) = candidates.iter().position(|c| *c == b) {
                    current[k] += 1;
                    field_start = true;
                } else {
                    field_start = false;
                }
                seen = true;
            }
        }
    }
    if seen {
        lines.push(current);
    }
    lines
}

/// Whether the start of a file looks like CSV: text whose first line has at least two
/// fields, and not the start of XML, OFX, MT940 or QIF.
pub fn sniff(head: &str) -> bool {
    let head = head.trim_start_matches(|c: char| c == '\u{FEFF}' || c.is_whitespace());
    // XML (CAMT, OFX 2), OFX 1 headers, QIF `!Type`, MT940 `:20:`/`{1:` blocks, JSON.
    let markup = ["<", "OFXHEADER", "!", ":", "{", "["];
    if head.is_empty() || markup.iter().any(|m| head.starts_with(m)) {
        return false;
    }
    let first = head.lines().next().unwrap_or("");
    if first.chars().any(is_binary_char) {
        return false;
    }
    let delimiter = detect_delimiter(head);
    let k = DELIMITERS.iter().position(|c| *c == delimiter).unwrap_or(0);
    count_per_line(first, &DELIMITERS, 1)
        .first()
        .is_some_and(|l| l[k] > 0)
}

/// One record of the file.
#[derive(Debug, Clone)]
struct Record {
    /// The 1-based line of the file where it starts.
    line: u32,
    cells: Vec<String>,
}

impl Record {
    fn is_blank(&self) -> bool {
        self.cells.iter().all(|c| c.is_empty())
    }

    fn cell(&self, i: usize) -> &str {
        self.cells.get(i).map_or("", String::as_str)
    }

    fn is_junk(&self) -> bool {
        self.cells.iter().any(|c| c.chars().any(is_binary_char))
    }
}

fn read_records(text: &str, delimiter: u8, lines_before: u32) -> Result<Vec<Record>, FormatError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let bytes = text.as_bytes();
    let (mut counted_to, mut line) = (0usize, 1u32);
    let mut out = Vec::new();
    for record in reader.byte_records() {
        let record =
            record.map_err(|e| FormatError(format!("the file cannot be read as CSV: {e}")))?;
        // csv's own line numbers go wrong around blank lines, and its byte offset is
        // where it began skipping them: count the line breaks up to the record itself.
        let mut start = record
            .position()
            .map_or(counted_to, |p| {
                usize::try_from(p.byte()).unwrap_or(usize::MAX)
            })
            .clamp(counted_to, bytes.len());
        while bytes.get(start).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            start += 1;
        }
        line = line.saturating_add(line_breaks(&bytes[counted_to..start]));
        counted_to = start;
        out.push(Record {
            line: lines_before.saturating_add(line),
            cells: record
                .iter()
                .map(|f| String::from_utf8_lossy(f).trim().to_owned())
                .collect(),
        });
    }
    Ok(out)
}

/// Line breaks in `bytes`: `\n`, `\r\n`, or a lone `\r`.
fn line_breaks(bytes: &[u8]) -> u32 {
    let mut n = 0u32;
    for (i, b) in bytes.iter().enumerate() {
        let lone_cr = *b == b'\r' && bytes.get(i + 1) != Some(&b'\n');
        if *b == b'\n' || lone_cr {
            n = n.saturating_add(1);
        }
    }
    n
}

/// The text after the first `n` lines (ended by `\n`, `\r\n` or a lone `\r`, as
/// [`line_breaks`] counts them), and how many lines were skipped.
fn skip_lines(text: &str, n: u32) -> (&str, u32) {
    let bytes = text.as_bytes();
    let mut skipped = 0u32;
    let mut i = 0usize;
    while skipped < n {
        match bytes.get(i) {
            None => return ("", skipped.saturating_add(1)),
            Some(b'\n') => skipped += 1,
            Some(b'\r') if bytes.get(i + 1) != Some(&b'\n') => skipped += 1,
            Some(_) => {}
        }
        i += 1;
    }
    // `i` is just past an ASCII line break, so a char boundary.
    (text.get(i..).unwrap_or(""), n)
}

fn show_header(cells: &[String]) -> String {
    let mut shown = cells.join(" | ");
    if shown.chars().count() > 200 {
        shown = shown.chars().take(200).collect::<String>() + "…";
    }
    shown
}

/// Parses a decoded CSV file. With a mapping, the file is read as it says; without one,
/// the header is looked for among the first 20 lines and matched against [`PRESETS`],
/// then the generic recogniser. Returns what was read, the mapping actually used (the
/// preset's, with the detected delimiter, decimal mark, day/month order and lines before
/// the header filled in: saving it reads the next file the same way), and the preset's
/// name (`generic` for the recogniser; `None` with a given mapping).
pub fn parse(
    text: &str,
    mapping: Option<&Mapping>,
) -> Result<(Parsed, Mapping, Option<&'static str>), FormatError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(FormatError("the file is empty".into()));
    }
    let mut warnings = Vec::new();
    let (mapping, preset, records, header_at) = match mapping {
        Some(given) => {
            given
                .check()
                .map_err(|e| FormatError(format!("the mapping is not valid: {e}")))?;
            let (body, lines_before) = skip_lines(text, given.skip_rows);
            let delimiter = match given.delimiter {
                Some(d) => u8::try_from(d).unwrap_or(b','),
                None => detect_delimiter(body),
            };
            let records = read_records(body, delimiter, lines_before)?;
            let header_at = if given.header() {
                match records.iter().position(|r| !r.is_blank()) {
                    Some(i) => Some(i),
                    None => return Err(FormatError("the file has no header row".into())),
                }
            } else {
                None
            };
            let mut used = given.clone();
            used.delimiter = Some(char::from(delimiter));
            (used, None, records, header_at)
        }
        None => {
            let delimiter = detect_delimiter(text);
            let records = read_records(text, delimiter, 0)?;
            let mut found = None;
            for (i, record) in records
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.is_blank())
                .take(20)
            {
                if let Some((name, m)) = preset_for(&record.cells) {
                    found = Some((i, name, m));
                } else if let Some(m) = generic_for(&record.cells) {
                    found = Some((i, "generic", m));
                }
                if found.is_some() {
                    break;
                }
            }
            let Some((i, name, mut m)) = found else {
                let first = records
                    .iter()
                    .find(|r| !r.is_blank())
                    .map(|r| r.cells.as_slice());
                return Err(FormatError(format!(
                    "no known layout: the first line reads `{}`; a mapping is needed (which \
                     column holds the date, and the amount or the debit and credit)",
                    show_header(first.unwrap_or(&[]))
                )));
            };
            let before = records[i].line.saturating_sub(1);
            if before > 0 {
                warnings.push(Warning {
                    row: None,
                    message: format!(
                        "{} before the header {} skipped",
                        if before == 1 {
                            "line 1".to_string()
                        } else {
                            format!("lines 1–{before}")
                        },
                        if before == 1 { "was" } else { "were" }
                    ),
                });
            }
            m.skip_rows = before;
            m.delimiter = Some(char::from(delimiter));
            (m, Some(name), records, Some(i))
        }
    };
    let header = header_at.and_then(|i| records.get(i));
    let data: Vec<&Record> = records
        .iter()
        .skip(header_at.map_or(0, |i| i + 1))
        .filter(|r| !r.is_blank())
        .collect();
    if data.is_empty() {
        return Err(FormatError(
            if header.is_some() {
                "the file has a header but no rows"
            } else {
                "the file has no rows"
            }
            .into(),
        ));
    }
    let (parsed, used) = read_rows(mapping, header, &data, warnings)?;
    Ok((parsed, used, preset))
}

/// Which way the money went, when the file says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

fn direction_word(word: &str) -> Option<Dir> {
    match word.trim().to_lowercase().as_str() {
        "cr" | "c" | "credit" | "h" | "haben" | "+" => Some(Dir::In),
        "dr" | "d" | "debit" | "s" | "soll" | "-" => Some(Dir::Out),
        _ => None,
    }
}

/// The resolved columns of a mapping.
struct Columns {
    date: usize,
    value_date: Option<usize>,
    amount: Option<usize>,
    debit: Option<usize>,
    credit: Option<usize>,
    direction: Option<usize>,
    currency: Option<usize>,
    merchant: Option<usize>,
    description: Vec<usize>,
    external_id: Option<usize>,
    category: Option<usize>,
    account: Option<usize>,
}

fn resolve(mapping: &Mapping, header: Option<&Record>) -> Result<Columns, FormatError> {
    let cells: Vec<String> =
        header.map_or(Vec::new(), |h| h.cells.iter().map(|c| norm(c)).collect());
    let find = |field: &str, col: &str| -> Result<usize, FormatError> {
        match column_ref(col)
            .map_err(|e| FormatError(format!("the mapping is not valid: {field}: {e}")))?
        {
            Col::Index(i) => Ok(i),
            Col::Name(name) => {
                let n = norm(&name);
                cells.iter().position(|c| *c == n).ok_or_else(|| {
                    FormatError(format!(
                        "the mapping's {field} column `{name}` is not in the header `{}`",
                        show_header(header.map_or(&[][..], |h| h.cells.as_slice()))
                    ))
                })
            }
        }
    };
    let opt = |field: &str, col: &Option<String>| -> Result<Option<usize>, FormatError> {
        col.as_deref().map(|c| find(field, c)).transpose()
    };
    Ok(Columns {
        date: find("date", &mapping.date)?,
        value_date: opt("value_date", &mapping.value_date)?,
        amount: opt("amount", &mapping.amount)?,
        debit: opt("debit", &mapping.debit)?,
        credit: opt("credit", &mapping.credit)?,
        direction: opt("direction", &mapping.direction)?,
        currency: opt("currency", &mapping.currency)?,
        merchant: opt("merchant", &mapping.merchant)?,
        description: mapping
            .description
            .iter()
            .map(|c| find("description", c))
            .collect::<Result<_, _>>()?,
        external_id: opt("external_id", &mapping.external_id)?,
        category: opt("category", &mapping.category)?,
        account: opt("account", &mapping.account)?,
    })
}

/// How a file's rows are read, once decided.
struct Reading<'a> {
    cols: Columns,
    labels: Vec<String>,
    mark: DecimalMark,
    thousands: Option<char>,
    date_format: Option<&'a str>,
    order: DateOrder,
    sign: Sign,
    header_currency: Option<String>,
}

const PENDING: &[&str] = &["pending", "ausstehend", "vorgemerkt", "in bearbeitung"];

fn read_rows(
    mut mapping: Mapping,
    header: Option<&Record>,
    data: &[&Record],
    mut warnings: Vec<Warning>,
) -> Result<(Parsed, Mapping), FormatError> {
    let cols = resolve(&mapping, header)?;
    let width = data.iter().map(|r| r.cells.len()).max().unwrap_or(0);
    let labels: Vec<String> = (0..width.max(header.map_or(0, |h| h.cells.len())))
        .map(|i| match header.map(|h| h.cell(i)) {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => format!("#{i}"),
        })
        .collect();
    let rows: Vec<&Record> = data.iter().copied().filter(|r| !r.is_junk()).collect();

    // The decimal mark: the mapping's, else implied by its thousands separator, else
    // the amounts' own votes.
    let mark = match (mapping.decimal, mapping.thousands) {
        (Some(d), _) => d.into(),
        (None, Some('.')) => DecimalMark::Comma,
        (None, Some(',')) => DecimalMark::Point,
        _ => {
            let amount_cols: Vec<usize> = [cols.amount, cols.debit, cols.credit]
                .into_iter()
                .flatten()
                .collect();
            let cells = rows
                .iter()
                .flat_map(|r| amount_cols.iter().map(|c| r.cell(*c)));
            vote_mark(cells, mapping.delimiter == Some(';'))
        }
    };
    mapping.decimal = Some(mark.into());

    // The day/month order for dates like 01/02/2024.
    let mut order = mapping.date_order.unwrap_or(DateOrder::DayFirst);
    if mapping.date_format.is_none() && mapping.date_order.is_none() {
        let date_cols: Vec<usize> = [Some(cols.date), cols.value_date]
            .into_iter()
            .flatten()
            .collect();
        let mut first_high = false;
        let mut second_high = false;
        let mut undecided: Option<(String, char)> = None;
        for cell in rows
            .iter()
            .flat_map(|r| date_cols.iter().map(|c| r.cell(*c)))
        {
            if let Some(Shape::Ambiguous { a, b, sep, .. }) = date_shape(cell) {
                first_high |= a > 12;
                second_high |= b > 12;
                if a != b && undecided.is_none() {
                    undecided = Some((cell.to_owned(), sep));
                }
            }
        }
        if first_high {
            order = DateOrder::DayFirst;
            mapping.date_order = Some(order);
        } else if second_high {
            order = DateOrder::MonthFirst;
            mapping.date_order = Some(order);
        } else if let Some((example, sep)) = undecided {
            order = if sep == '/' {
                DateOrder::MonthFirst
            } else {
                DateOrder::DayFirst
            };
            warnings.push(Warning {
                row: None,
                message: format!(
                    "dates such as `{example}` could be day-first or month-first; read as {}. \
                     Set `date_order` in the mapping if that is wrong",
                    match order {
                        DateOrder::DayFirst => "day-first (DD/MM/YYYY)",
                        DateOrder::MonthFirst => "month-first (MM/DD/YYYY)",
                    }
                ),
            });
        }
    }

    let header_currency = [cols.amount, cols.debit, cols.credit]
        .into_iter()
        .flatten()
        .find_map(|c| labels.get(c).and_then(|l| header_currency(l)));
    let reading = Reading {
        labels,
        mark,
        thousands: mapping.thousands,
        date_format: mapping.date_format.as_deref(),
        order,
        sign: mapping.sign,
        header_currency,
        cols,
    };

    let mut parsed = Parsed::default();
    // The statements in order of first appearance, with their index, and the one
    // currency of their rows (`Some(None)` once rows disagree).
    let mut accounts: Vec<Option<String>> = Vec::new();
    let mut index: HashMap<Option<String>, usize> = HashMap::new();
    let mut currencies: Vec<Option<Option<String>>> = Vec::new();
    let mut junk: Option<(u32, u32)> = None;
    let flush = |junk: &mut Option<(u32, u32)>, parsed: &mut Parsed| {
        if let Some((first, last)) = junk.take() {
            let reason = if first == last {
                format!("line {first} holds binary bytes, not text")
            } else {
                format!("lines {first}–{last} hold binary bytes, not text")
            };
            parsed.rows.push(Err(Rejected {
                row: first,
                field: "row".into(),
                reason,
            }));
        }
    };
    for record in data {
        if record.is_junk() {
            let last = record.line
                + record
                    .cells
                    .iter()
                    .map(|c| c.matches('\n').count() as u32)
                    .sum::<u32>();
            junk = match junk {
                Some((first, _)) => Some((first, last)),
                None => Some((record.line, last)),
            };
            continue;
        }
        flush(&mut junk, &mut parsed);
        let date_cell = record.cell(reading.cols.date);
        if PENDING.contains(&date_cell.to_lowercase().as_str()) {
            parsed.warnings.push(Warning {
                row: Some(record.line),
                message: format!("`{date_cell}`: not booked yet, skipped"),
            });
            continue;
        }
        match reading.row(record) {
            Ok(mut row) => {
                let account = reading
                    .cols
                    .account
                    .map(|c| record.cell(c))
                    .filter(|a| !a.is_empty());
                let account = account.map(str::to_owned);
                row.statement = *index.entry(account.clone()).or_insert_with(|| {
                    accounts.push(account);
                    currencies.push(None);
                    accounts.len() - 1
                });
                if let Some(seen) = currencies.get_mut(row.statement) {
                    *seen = match seen.take() {
                        None => Some(row.currency.clone()),
                        Some(c) if c == row.currency => Some(c),
                        Some(_) => Some(None),
                    };
                }
                parsed.rows.push(Ok(row));
            }
            Err(rejected) => parsed.rows.push(Err(rejected)),
        }
    }
    flush(&mut junk, &mut parsed);
    if accounts.is_empty() {
        accounts.push(None);
    }
    parsed.statements = accounts
        .into_iter()
        .zip(currencies.into_iter().chain(std::iter::repeat(None)))
        .map(|(account, currency)| StatementInfo {
            account,
            currency: currency.flatten(),
        })
        .collect();
    warnings.append(&mut parsed.warnings);
    parsed.warnings = warnings;
    Ok((parsed, mapping))
}

impl Reading<'_> {
    fn label(&self, col: usize) -> &str {
        self.labels.get(col).map_or("?", String::as_str)
    }

    fn row(&self, record: &Record) -> Result<ParsedRow, Rejected> {
        let reject = |field: &str, reason: String| Rejected {
            row: record.line,
            field: field.into(),
            reason,
        };
        let date = self
            .date(record.cell(self.cols.date))
            .map_err(|e| reject("date", e))?;
        let value_date = match self.cols.value_date.map(|c| record.cell(c)) {
            Some(cell) if !cell.is_empty() => {
                Some(self.date(cell).map_err(|e| reject("value_date", e))?)
            }
            _ => None,
        };
        let (amount, currency_in_cell) = self.amount(record).map_err(|e| reject("amount", e))?;
        let currency = match self.cols.currency.map(|c| record.cell(c)) {
            Some(cell) if !cell.is_empty() => {
                let code = cell.to_ascii_uppercase();
                if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(reject(
                        "currency",
                        format!("`{cell}` is not an ISO 4217 currency code"),
                    ));
                }
                Some(code)
            }
            _ => currency_in_cell.or_else(|| self.header_currency.clone()),
        };
        let text = |col: Option<usize>| {
            col.map(|c| one_line(record.cell(c)))
                .filter(|t| !t.is_empty())
        };
        let description = self
            .cols
            .description
            .iter()
            .map(|c| one_line(record.cell(*c)))
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(ParsedRow {
            row: record.line,
            date,
            value_date,
            amount,
            currency,
            merchant: text(self.cols.merchant),
            description,
            external_id: text(self.cols.external_id),
            category: text(self.cols.category),
            statement: 0,
        })
    }

    fn date(&self, cell: &str) -> Result<NaiveDate, String> {
        if cell.is_empty() {
            return Err("the date is empty".into());
        }
        if let Some(fmt) = self.date_format {
            return parse_with_format(cell, fmt)
                .ok_or_else(|| format!("`{cell}` does not match the date format `{fmt}`"));
        }
        match date_shape(cell) {
            Some(Shape::Known { y, m, d }) => {
                NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| format!("`{cell}` is not a date"))
            }
            Some(Shape::Ambiguous { a, b, y, .. }) => {
                let (m, d) = match self.order {
                    DateOrder::DayFirst => (b, a),
                    DateOrder::MonthFirst => (a, b),
                };
                NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| {
                    format!(
                        "`{cell}` is not a date in the file's {} order",
                        match self.order {
                            DateOrder::DayFirst => "day-first",
                            DateOrder::MonthFirst => "month-first",
                        }
                    )
                })
            }
            None => Err(format!("`{cell}` is not a date")),
        }
    }

    /// The signed amount, and a currency the amount cells state.
    fn amount(&self, record: &Record) -> Result<(Decimal, Option<String>), String> {
        let read = |col: usize| -> Result<Option<Amount>, String> {
            let cell = record.cell(col);
            read_amount(cell, self.mark, self.thousands)
                .map_err(|()| format!("`{cell}` in column `{}` is not an amount", self.label(col)))
        };
        let (value, mut dir, currency) = if let Some(col) = self.cols.amount {
            match read(col)? {
                Some(a) => (a.value, a.dir, a.currency),
                None => return Err(format!("the amount (`{}`) is empty", self.label(col))),
            }
        } else {
            let debit = self.cols.debit.map(&read).transpose()?.flatten();
            let credit = self.cols.credit.map(&read).transpose()?.flatten();
            let nonzero = |a: &Option<Amount>| a.as_ref().filter(|a| !a.value.is_zero()).cloned();
            match (nonzero(&debit), nonzero(&credit)) {
                (Some(_), Some(_)) => {
                    let show = |col: Option<usize>| {
                        col.map_or(String::new(), |c| {
                            format!("`{}` ({})", self.label(c), record.cell(c))
                        })
                    };
                    return Err(format!(
                        "both {} and {} are filled",
                        show(self.cols.debit),
                        show(self.cols.credit)
                    ));
                }
                (Some(d), None) => (abs(d.value).neg(), d.dir, d.currency),
                (None, Some(c)) => (abs(c.value), c.dir, c.currency),
                (None, None) => match debit.or(credit) {
                    Some(zero) => (abs(zero.value), None, zero.currency),
                    None => {
                        let names: Vec<&str> = [self.cols.debit, self.cols.credit]
                            .into_iter()
                            .flatten()
                            .map(|c| self.label(c))
                            .collect();
                        return Err(format!("no amount: `{}` is empty", names.join("` and `")));
                    }
                },
            }
        };
        if let Some(col) = self.cols.direction {
            let cell = record.cell(col);
            if !cell.is_empty() {
                dir = Some(direction_word(cell).ok_or_else(|| {
                    format!(
                        "`{cell}` in column `{}` is neither a credit (CR, H) nor a debit (DR, S) mark",
                        self.label(col)
                    )
                })?);
            }
        }
        let signed = match dir {
            Some(Dir::In) => abs(value),
            Some(Dir::Out) => abs(value).neg(),
            None if self.sign == Sign::Inverted => value.neg(),
            None => value,
        };
        Ok((signed, currency))
    }
}

fn abs(d: Decimal) -> Decimal {
    if d.is_negative() { d.neg() } else { d }
}

/// Line breaks inside a quoted cell become spaces.
fn one_line(cell: &str) -> String {
    if cell.contains(['\n', '\r']) {
        cell.split(['\n', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        cell.trim().to_owned()
    }
}

/// An amount cell as read.
#[derive(Debug, Clone)]
struct Amount {
    value: Decimal,
    dir: Option<Dir>,
    currency: Option<String>,
}

/// Reads an amount cell: `Ok(None)` when empty, `Err` when it is not a number, or when
/// thousands separators are out of place (`12,50` in a point file is not 1250).
fn read_amount(
    cell: &str,
    mark: DecimalMark,
    thousands: Option<char>,
) -> Result<Option<Amount>, ()> {
    let mut text = cell.trim().to_owned();
    if text.is_empty() {
        return Ok(None);
    }
    // A direction word after the number: `1,100.00 CR`, `12,50 S`.
    let mut dir = None;
    if let Some((body, last)) = text.rsplit_once(char::is_whitespace)
        && let Some(d) = direction_word(last).filter(|_| last.chars().all(|c| c.is_alphabetic()))
    {
        dir = Some(d);
        text = body.trim_end().to_owned();
    }
    let currency = if text.contains('£') {
        Some("GBP".to_owned())
    } else if text.contains('€') {
        Some("EUR".to_owned())
    } else {
        text.split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_uppercase()))
            .map(str::to_owned)
    };
    let (point, grouping) = match mark {
        DecimalMark::Point => ('.', ','),
        DecimalMark::Comma => (',', '.'),
    };
    if let Some(t) = thousands
        && t != grouping
    {
        text = text.replace(t, "");
    }
    // Thousands groups: 1 to 3 digits, then groups of exactly 3.
    let core: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == point || *c == grouping)
        .collect();
    let integer = core.split(point).next().unwrap_or("");
    if integer.contains(grouping) {
        let mut groups = integer.split(grouping);
        let first_ok = groups.next().is_some_and(|g| (1..=3).contains(&g.len()));
        if !first_ok || !groups.all(|g| g.len() == 3) {
            return Err(());
        }
    }
    let value = parse_decimal(&text, mark).ok_or(())?;
    Ok(Some(Amount {
        value,
        dir,
        currency,
    }))
}

/// The decimal mark the amounts vote for: `1.234,56` and `-17,22` say comma, `1,234.56`
/// and `12.50` point, `1.234` nothing. A tie goes to comma in a `;` file, else point.
fn vote_mark<'a>(cells: impl Iterator<Item = &'a str>, semicolon: bool) -> DecimalMark {
    let (mut point, mut comma) = (0usize, 0usize);
    for cell in cells {
        let core: Vec<char> = cell
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
            .collect();
        let Some(last) = core.iter().rposition(|c| *c == '.' || *c == ',') else {
            continue;
        };
        let sep = core[last];
        let dots = core.iter().filter(|c| **c == '.').count();
        let commas = core.iter().filter(|c| **c == ',').count();
        let after = core.len() - last - 1;
        let vote = if dots > 0 && commas > 0 {
            Some(sep)
        } else if dots > 1 || commas > 1 {
            Some(if sep == '.' { ',' } else { '.' })
        } else if after == 3 || after == 0 {
            None
        } else {
            Some(sep)
        };
        match vote {
            Some('.') => point += 1,
            Some(',') => comma += 1,
            _ => {}
        }
    }
    if comma > point || (comma == point && semicolon) {
        DecimalMark::Comma
    } else {
        DecimalMark::Point
    }
}

/// An ISO 4217 code in a header such as `Betrag (EUR)` or `Paid Out (GBP)`.
fn header_currency(label: &str) -> Option<String> {
    let t = label.trim();
    let inner = t.strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let code = inner[open + 1..].trim();
    (code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| code.to_ascii_uppercase())
}

/// A date cell read by its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The order is certain (ISO, dotted, a month name).
    Known { y: i32, m: u32, d: u32 },
    /// `a/b/y` or `a-b-y`: day and month in the file's order.
    Ambiguous { a: u32, b: u32, y: i32, sep: char },
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Num { value: u32, digits: usize },
    Month(u32),
}

const MONTHS: [&[&str]; 12] = [
    &["january", "januar", "jänner"],
    &["february", "februar"],
    &["march", "märz", "mrz"],
    &["april"],
    &["may", "mai"],
    &["june", "juni"],
    &["july", "juli"],
    &["august"],
    &["september"],
    &["october", "oktober"],
    &["november"],
    &["december", "dezember"],
];

fn month(word: &str) -> Option<u32> {
    let w = word.to_lowercase();
    if w.chars().count() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|names| names.iter().any(|n| n.starts_with(&w)))
        .and_then(|i| u32::try_from(i + 1).ok())
}

fn year(value: u32, digits: usize) -> Option<i32> {
    let v = i32::try_from(value).ok()?;
    match digits {
        4 => Some(v),
        2 if v < 70 => Some(2000 + v),
        2 => Some(1900 + v),
        _ => None,
    }
}

/// Reads the shape of a date: three parts (numbers or a month name) separated by
/// `-` `.` `/` `,` or spaces, or eight digits `YYYYMMDD`; a time after it (` 12:34:56
/// +0000`, `T11:33:59`) is ignored.
fn date_shape(cell: &str) -> Option<Shape> {
    let s = cell.trim();
    let mut parts: Vec<Part> = Vec::new();
    let mut seps: Vec<char> = Vec::new();
    let mut chars = s.char_indices().peekable();
    let mut rest = "";
    while parts.len() < 3 {
        let mut sep = None;
        while let Some((_, c)) = chars.peek().copied() {
            if matches!(c, '-' | '.' | '/' | ',' | ' ') {
                if c != ' ' || sep.is_none() {
                    sep = Some(c);
                }
                chars.next();
            } else {
                break;
            }
        }
        if !parts.is_empty() {
            seps.push(sep?);
        } else if sep.is_some() {
            return None;
        }
        let (start, c) = chars.peek().copied()?;
        let mut end = start;
        if c.is_ascii_digit() {
            while let Some((i, c)) = chars.peek().copied() {
                if !c.is_ascii_digit() {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            let digits = &s[start..end];
            if parts.is_empty() && digits.len() == 8 {
                let n =
                    |r: std::ops::Range<usize>| digits.get(r).and_then(|d| d.parse::<u32>().ok());
                parts.push(Part::Num {
                    value: n(0..4)?,
                    digits: 4,
                });
                parts.push(Part::Num {
                    value: n(4..6)?,
                    digits: 2,
                });
                parts.push(Part::Num {
                    value: n(6..8)?,
                    digits: 2,
                });
                seps = vec!['-', '-'];
            } else {
                parts.push(Part::Num {
                    value: digits.parse().ok()?,
                    digits: digits.len(),
                });
            }
        } else if c.is_alphabetic() {
            while let Some((i, c)) = chars.peek().copied() {
                if !c.is_alphabetic() {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            parts.push(Part::Month(month(&s[start..end])?));
        } else {
            return None;
        }
        rest = &s[end..];
    }
    // What follows must be a time (`12:34:56 +0000`, `T11:33:59Z`) or nothing.
    if !rest.is_empty() {
        let time = rest
            .strip_prefix('T')
            .or_else(|| rest.strip_prefix(' '))?
            .trim_start();
        if !(time.starts_with(|c: char| c.is_ascii_digit()) && time.contains(':')) {
            return None;
        }
    }
    match parts[..] {
        [
            Part::Num {
                value: y,
                digits: 4,
            },
            Part::Num {
                value: m,
                digits: md,
            },
            Part::Num {
                value: d,
                digits: dd,
            },
        ] if md <= 2 && dd <= 2 => Some(Shape::Known {
            y: year(y, 4)?,
            m,
            d,
        }),
        [
            Part::Num {
                value: a,
                digits: ad,
            },
            Part::Num {
                value: b,
                digits: bd,
            },
            Part::Num {
                value: y,
                digits: yd,
            },
        ] if ad <= 2 && bd <= 2 => {
            let y = year(y, yd)?;
            if seps.first() == Some(&'.') {
                Some(Shape::Known { y, m: b, d: a })
            } else {
                Some(Shape::Ambiguous {
                    a,
                    b,
                    y,
                    sep: seps.first().copied().unwrap_or('/'),
                })
            }
        }
        [
            Part::Num {
                value: d,
                digits: dd,
            },
            Part::Month(m),
            Part::Num {
                value: y,
                digits: yd,
            },
        ] if dd <= 2 => Some(Shape::Known {
            y: year(y, yd)?,
            m,
            d,
        }),
        [
            Part::Month(m),
            Part::Num {
                value: d,
                digits: dd,
            },
            Part::Num {
                value: y,
                digits: 4,
            },
        ] if dd <= 2 => Some(Shape::Known {
            y: year(y, 4)?,
            m,
            d,
        }),
        _ => None,
    }
}

/// A date in a strftime format; a format with a time (and offset) gives the calendar day
/// as written, not shifted to UTC.
fn parse_with_format(cell: &str, fmt: &str) -> Option<NaiveDate> {
    let cell = cell.trim();
    NaiveDate::parse_from_str(cell, fmt)
        .ok()
        .or_else(|| {
            DateTime::parse_from_str(cell, fmt)
                .ok()
                .map(|d| d.naive_local().date())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(cell, fmt)
                .ok()
                .map(|d| d.date())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::decode::decode;

    fn fixture(name: &str) -> Option<String> {
        let path = format!(
            "{}/../../../shared/fixtures/imports/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        match std::fs::read(path) {
            Ok(bytes) => Some(decode(&bytes, None, None).expect(name).text),
            Err(_) => {
                eprintln!("skipped: ../shared/fixtures absent");
                None
            }
        }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect(s)
    }

    /// An expected row.
    #[derive(Debug, Clone)]
    struct Want {
        row: u32,
        date: &'static str,
        value_date: Option<&'static str>,
        units: i128,
        scale: u32,
        currency: Option<&'static str>,
        merchant: Option<&'static str>,
        description: &'static str,
        external_id: Option<&'static str>,
        category: Option<&'static str>,
        statement: usize,
    }

    fn ok(
        row: u32,
        date: &'static str,
        units: i128,
        scale: u32,
        description: &'static str,
    ) -> Want {
        Want {
            row,
            date,
            value_date: None,
            units,
            scale,
            currency: None,
            merchant: None,
            description,
            external_id: None,
            category: None,
            statement: 0,
        }
    }

    impl Want {
        fn cur(mut self, c: &'static str) -> Self {
            self.currency = Some(c);
            self
        }
        fn vd(mut self, d: &'static str) -> Self {
            self.value_date = Some(d);
            self
        }
        fn merchant(mut self, m: &'static str) -> Self {
            self.merchant = Some(m);
            self
        }
        fn cat(mut self, c: &'static str) -> Self {
            self.category = Some(c);
            self
        }
        fn id(mut self, i: &'static str) -> Self {
            self.external_id = Some(i);
            self
        }
        fn row(&self) -> ParsedRow {
            ParsedRow {
                row: self.row,
                date: day(self.date),
                value_date: self.value_date.map(day),
                amount: Decimal {
                    units: self.units,
                    scale: self.scale,
                },
                currency: self.currency.map(str::to_owned),
                merchant: self.merchant.map(str::to_owned),
                description: self.description.to_owned(),
                external_id: self.external_id.map(str::to_owned),
                category: self.category.map(str::to_owned),
                statement: self.statement,
            }
        }
    }

    fn rejected(row: u32, field: &str, reason: &str) -> Result<ParsedRow, Rejected> {
        Err(Rejected {
            row,
            field: field.into(),
            reason: reason.into(),
        })
    }

    fn statement(account: Option<&str>, currency: Option<&str>) -> StatementInfo {
        StatementInfo {
            account: account.map(str::to_owned),
            currency: currency.map(str::to_owned),
        }
    }

    fn pending(row: u32) -> Warning {
        Warning {
            row: Some(row),
            message: "`Pending`: not booked yet, skipped".into(),
        }
    }

    struct FixtureCase {
        file: &'static str,
        preset: &'static str,
        statements: Vec<StatementInfo>,
        warnings: Vec<Warning>,
        rows: Vec<Result<ParsedRow, Rejected>>,
    }

    fn fixture_cases() -> Vec<FixtureCase> {
        let okr = |w: Want| Ok(w.row());
        vec![
            FixtureCase {
                file: "csv_us_schwab_checking.csv",
                preset: "schwab",
                statements: vec![statement(None, None)],
                warnings: vec![],
                rows: vec![
                    okr(ok(2, "2022-08-17", 2000, 2, "Deposit Mobile Banking")),
                    okr(ok(3, "2022-08-14", -10300, 2, "BMO HARRIS BANK")),
                    okr(ok(4, "2022-08-09", -7500, 2, "Check Paid #558")),
                    okr(ok(5, "2022-08-04", -5727, 2, "PAYPAL INST XFER 220803~ Tran: ACHDW")),
                ],
            },
            FixtureCase {
                file: "csv_us_capitalone_card.csv",
                preset: "capital_one",
                statements: vec![statement(None, None)],
                warnings: vec![],
                rows: vec![
                    okr(ok(2, "2015-12-31", -100000, 2, "Airplanes R Us")
                        .vd("2016-01-02")
                        .cat("Other Travel")),
                    okr(ok(3, "2015-12-31", 100000, 2, "CAPITAL ONE AUTOPAY PYMT")
                        .vd("2016-01-02")
                        .cat("Payment/Credit")),
                ],
            },
            FixtureCase {
                file: "csv_de_commerzbank.csv",
                preset: "commerzbank",
                statements: vec![statement(Some("DE44200400000538917600"), Some("EUR"))],
                warnings: vec![],
                rows: vec![okr(ok(
                    2,
                    "2018-03-02",
                    -1722,
                    2,
                    "Kartenzahlung REWE SAGT DANKE. 41400673//Hamburg 2018-03-01T11:33:59 KFN 1 VJ 1812",
                )
                .vd("2018-03-02")
                .cur("EUR"))],
            },
            FixtureCase {
                file: "csv_de_gls_latin1.csv",
                preset: "gls",
                statements: vec![statement(Some("1234567890"), Some("EUR"))],
                warnings: vec![],
                rows: vec![okr(ok(
                    2,
                    "2017-10-10",
                    -9876,
                    2,
                    "B4658645 U123456789 B123456 987 SIMply Rechnung",
                )
                .vd("2017-10-10")
                .cur("EUR")
                .merchant("Drillisch Online AG"))],
            },
            FixtureCase {
                file: "csv_uk_card_utf8_bom.csv",
                preset: "ms_bank_card",
                statements: vec![statement(None, Some("GBP"))],
                warnings: vec![pending(2), pending(3), pending(4)],
                rows: vec![
                    okr(ok(5, "2019-12-12", -118323, 2, "ROYAL LONDON INSURANCE        01222 61234  GBR").cur("GBP")),
                    okr(ok(6, "2019-12-12", -1889, 2, "DELIVEROO.CO.UK        LONDON        LND").cur("GBP")),
                    okr(ok(7, "2019-12-12", -2300, 2, "NOOKI DESIGN           LONDON  NW10  GBR").cur("GBP")),
                    okr(ok(8, "2019-12-12", -8099, 2, "NEXT DIRECTORY         ONLINE        GBR").cur("GBP")),
                    okr(ok(9, "2019-12-03", -150, 2, "TFL TRAVEL CH          TFL.GOV.UK/CP GBR").cur("GBP")),
                    okr(ok(10, "2019-12-03", -5000, 2, "SPACE NK LTD           KENSINGTON    GBR").cur("GBP")),
                    okr(ok(11, "2019-12-03", -1000, 2, "V & A MUSEUM SALES     LONDON        GBR").cur("GBP")),
                    okr(ok(12, "2019-12-02", -999, 2, "Spotify UK             London        GBR").cur("GBP")),
                    okr(ok(13, "2019-12-02", -820, 2, "SAINSBURYS SACAT 0602  LADBROKE GROV GBR").cur("GBP")),
                    okr(ok(14, "2019-12-02", 110000, 2, "PAYMENT RECEIVED - THANK YOU").cur("GBP")),
                ],
            },
            FixtureCase {
                file: "csv_uk_monzo.csv",
                preset: "monzo",
                statements: vec![statement(None, Some("GBP"))],
                warnings: vec![],
                rows: vec![okr(ok(2, "2018-02-25", -10, 0, "Tesco")
                    .cur("GBP")
                    .cat("general")
                    .id("tx_00009TziTeST1NG1ZWIPGS"))],
            },
            FixtureCase {
                file: "csv_de_n26.csv",
                preset: "n26",
                statements: vec![statement(None, Some("EUR"))],
                warnings: vec![],
                rows: vec![okr(ok(2, "2017-10-01", -5999, 2, "")
                    .cur("EUR")
                    .merchant("NINTENDO OF EUROPE")
                    .cat("Medien & Elektronik"))],
            },
            FixtureCase {
                file: "csv_revolut_legacy.csv",
                preset: "revolut_legacy",
                statements: vec![statement(None, Some("EUR"))],
                warnings: vec![],
                rows: vec![
                    okr(ok(2, "2021-02-09", -2000, 2, "Groceries").cur("EUR").cat("General")),
                    okr(ok(3, "2021-02-01", -1400, 2, "Online Shopping").cur("EUR").cat("General")),
                    okr(ok(4, "2021-01-28", -2100, 2, "Groceries").cur("EUR").cat("General")),
                    okr(ok(5, "2021-01-26", 5560, 2, "Top-Up by *1234").cur("EUR").cat("General")),
                    okr(ok(6, "2021-01-25", -5000, 2, "Groceries").cur("EUR").cat("General")),
                    okr(ok(7, "2021-01-23", -1000, 2, "Candy Shop").cur("EUR").cat("General")),
                    okr(ok(8, "2021-01-18", 5000, 2, "Top-Up by *1234").cur("EUR").cat("General")),
                    okr(ok(9, "2021-01-15", -200, 1, "Hairdresser").cur("EUR").cat("Health")),
                    okr(ok(10, "2021-01-12", 5000, 2, "Top-Up by *1234").cur("EUR").cat("General")),
                ],
            },
            FixtureCase {
                file: "latin1_umlauts.csv",
                preset: "de_giro",
                statements: vec![statement(None, Some("EUR"))],
                warnings: vec![],
                rows: vec![
                    okr(ok(2, "2024-01-02", -435, 2, "Brötchen Kartenzahlung")
                        .vd("2024-01-02")
                        .cur("EUR")
                        .merchant("Bäckerei Müller GmbH")),
                    okr(ok(3, "2024-01-03", 12000, 2, "Rückzahlung Übernachtung")
                        .vd("2024-01-03")
                        .cur("EUR")
                        .merchant("Jürgen Weiß")),
                    okr(ok(4, "2024-01-05", -125000, 2, "Miete Januar")
                        .vd("2024-01-04")
                        .cur("EUR")
                        .merchant("Hausverwaltung Grünstraße")),
                ],
            },
            FixtureCase {
                file: "csv_identical_rows.csv",
                preset: "basic",
                statements: vec![statement(None, Some("EUR"))],
                warnings: vec![],
                rows: vec![
                    okr(ok(2, "2026-03-02", -380, 2, "CAFE CENTRAL BERLIN").cur("EUR")),
                    okr(ok(3, "2026-03-02", -380, 2, "CAFE CENTRAL BERLIN").cur("EUR")),
                    okr(ok(4, "2026-03-02", -350, 2, "BVG TICKET AUTOMAT").cur("EUR")),
                    okr(ok(5, "2026-03-03", -380, 2, "CAFE CENTRAL BERLIN").cur("EUR")),
                    okr(ok(6, "2026-03-04", 325000, 2, "SALARY ACME GMBH").cur("EUR")),
                ],
            },
            FixtureCase {
                file: "bad_unparseable_amount.csv",
                preset: "capital_one",
                statements: vec![statement(None, None)],
                warnings: vec![],
                rows: vec![
                    okr(ok(2, "2015-12-31", -100000, 2, "Airplanes R Us")
                        .vd("2016-01-02")
                        .cat("Other Travel")),
                    rejected(3, "amount", "`12.3.4` in column `Debit` is not an amount"),
                    okr(ok(4, "2015-12-31", 100000, 2, "CAPITAL ONE AUTOPAY PYMT")
                        .vd("2016-01-02")
                        .cat("Payment/Credit")),
                ],
            },
            FixtureCase {
                file: "bad_binary_junk.csv",
                preset: "schwab",
                statements: vec![statement(None, None)],
                warnings: vec![],
                rows: vec![
                    okr(ok(2, "2022-08-17", 2000, 2, "Deposit Mobile Banking")),
                    rejected(3, "row", "lines 3–5 hold binary bytes, not text"),
                    okr(ok(6, "2022-08-14", -10300, 2, "BMO HARRIS BANK")),
                ],
            },
        ]
    }

    #[test]
    fn every_row_of_every_csv_fixture_reads_as_the_file_says() {
        for case in fixture_cases() {
            let Some(text) = fixture(case.file) else {
                return;
            };
            let (parsed, used, preset) =
                parse(&text, None).unwrap_or_else(|e| panic!("{}: {e}", case.file));
            assert_eq!(preset, Some(case.preset), "{}", case.file);
            assert_eq!(parsed.statements, case.statements, "{}", case.file);
            assert_eq!(parsed.warnings, case.warnings, "{}", case.file);
            assert_eq!(
                parsed.rows.len(),
                case.rows.len(),
                "{}: {:#?}",
                case.file,
                parsed.rows
            );
            for (got, want) in parsed.rows.iter().zip(&case.rows) {
                assert_eq!(got, want, "{}", case.file);
            }
            // The mapping handed back reads the same file the same way.
            assert_eq!(used.check(), Ok(()), "{}", case.file);
            let (again, used_again, none) =
                parse(&text, Some(&used)).unwrap_or_else(|e| panic!("{}: {e}", case.file));
            assert_eq!(again, parsed, "{}", case.file);
            assert_eq!(used_again, used, "{}", case.file);
            assert_eq!(none, None);
            // And survives JSON.
            let json = serde_json::to_string(&used).expect("json");
            assert_eq!(serde_json::from_str::<Mapping>(&json).expect(&json), used);
        }
    }

    #[test]
    fn the_umlauts_of_a_latin1_file_survive() {
        let Some(text) = fixture("latin1_umlauts.csv") else {
            return;
        };
        let (parsed, _, _) = parse(&text, None).expect("parse");
        let all: String = parsed
            .rows
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| format!("{} {} ", r.merchant.as_deref().unwrap_or(""), r.description))
            .collect();
        for letter in ["ä", "ö", "ü", "ß", "Ü"] {
            assert!(all.contains(letter), "{letter} in {all}");
        }
    }

    #[test]
    fn identical_rows_stay_two_rows() {
        let Some(text) = fixture("csv_identical_rows.csv") else {
            return;
        };
        let (parsed, _, _) = parse(&text, None).expect("parse");
        let rows: Vec<&ParsedRow> = parsed.rows.iter().filter_map(|r| r.as_ref().ok()).collect();
        let same = |a: &ParsedRow, b: &ParsedRow| {
            (a.date, a.amount, &a.description, &a.currency)
                == (b.date, b.amount, &b.description, &b.currency)
        };
        assert!(same(rows[0], rows[1]));
        assert_ne!(rows[0].row, rows[1].row);
    }

    #[test]
    fn a_header_without_rows_is_refused() {
        let Some(text) = fixture("bad_header_only.csv") else {
            return;
        };
        assert_eq!(
            parse(&text, None).map(|_| ()),
            Err(FormatError("the file has a header but no rows".into()))
        );
        for text in ["Date,Amount\n", "Date,Amount\n\n,\n  \n\r\n"] {
            assert_eq!(
                parse(text, None).map(|_| ()),
                Err(FormatError("the file has a header but no rows".into())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn files_that_cannot_be_read_say_why() {
        let err = |text: &str| parse(text, None).map(|_| ()).unwrap_err().0;
        assert_eq!(err(""), "the file is empty");
        assert_eq!(err(" \r\n\n\t"), "the file is empty");
        assert_eq!(err("\u{FEFF}"), "the file is empty");
        let unknown = err("Foo;Bar;Baz\n1;2;3\n");
        assert!(unknown.contains("`Foo | Bar | Baz`"), "{unknown}");
        assert!(unknown.contains("a mapping is needed"), "{unknown}");
        // Data without a header is no layout either.
        let headless = err("2024-01-02,COFFEE,-3.50\n");
        assert!(
            headless.contains("`2024-01-02 | COFFEE | -3.50`"),
            "{headless}"
        );
        // A mapping naming a column the header lacks.
        let m = Mapping {
            date: "Datum".into(),
            amount: Some("Umsatz".into()),
            ..Mapping::default()
        };
        let e = parse("Datum;Betrag\n01.01.2024;1,00\n", Some(&m))
            .map(|_| ())
            .unwrap_err()
            .0;
        assert_eq!(
            e,
            "the mapping's amount column `Umsatz` is not in the header `Datum | Betrag`"
        );
        // An invalid mapping.
        let bad = Mapping {
            date: "Datum".into(),
            ..Mapping::default()
        };
        let e = parse("Datum;Betrag\n", Some(&bad))
            .map(|_| ())
            .unwrap_err()
            .0;
        assert!(e.starts_with("the mapping is not valid: amount:"), "{e}");
    }

    /// A row as compared in the crafted cases: line, date, units, scale; or the rejection.
    type Got = Result<(u32, String, i128, u32), String>;

    fn rows_of(text: &str, mapping: &str) -> Vec<Result<ParsedRow, Rejected>> {
        let m: Mapping = serde_json::from_str(mapping).expect(mapping);
        parse(text, Some(&m)).expect(mapping).0.rows
    }

    fn amounts(rows: &[Result<ParsedRow, Rejected>]) -> Vec<Got> {
        rows.iter()
            .map(|r| match r {
                Ok(r) => Ok((r.row, r.date.to_string(), r.amount.units, r.amount.scale)),
                Err(e) => Err(format!("{} {}: {}", e.row, e.field, e.reason)),
            })
            .collect()
    }

    #[test]
    fn mappings_read_crafted_files() {
        let a = |row, date: &str, units, scale| Ok((row, date.to_owned(), units, scale));
        let cases: Vec<(&str, &str, &str, Vec<Got>)> = vec![
            (
                "debit and credit, decimal comma with thousands dot, lines before the header",
                "Kontoauszug Girokonto\nIBAN: DE00 1234; \"a\nb\"\nDatum;Text;Soll;Haben\n\
                 01.02.2024;Miete;1.250,00;\n02.02.2024;Gehalt;;3.000,50\n03.02.2024;Null;0,00;\n",
                r#"{"date": "Datum", "debit": "Soll", "credit": "Haben", "description": "Text",
                    "skip_rows": 3, "decimal": "comma", "thousands": "."}"#,
                vec![
                    a(5, "2024-02-01", -125000, 2),
                    a(6, "2024-02-02", 300050, 2),
                    a(7, "2024-02-03", 0, 2),
                ],
            ),
            (
                "inverted sign for a card statement",
                "Date,Details,Amount\n2024-01-05,COFFEE,3.50\n2024-01-06,REFUND,-10.00\n",
                r#"{"date": "Date", "amount": "Amount", "sign": "inverted", "description": "Details"}"#,
                vec![a(2, "2024-01-05", -350, 2), a(3, "2024-01-06", 1000, 2)],
            ),
            (
                "positions without a header, a given delimiter and date format",
                "05/01/2024|ACME|12.00|usd\n06/01/2024|ACME|-1.5|USD\n",
                r##"{"date": "#0", "amount": "#2", "merchant": "#1", "currency": "#3",
                    "has_header": false, "date_format": "%d/%m/%Y", "delimiter": "|"}"##,
                vec![a(1, "2024-01-05", 1200, 2), a(2, "2024-01-06", -15, 1)],
            ),
            (
                "a Swiss thousands apostrophe",
                "Datum;Betrag\n31.01.2024;1'234.50\n31.01.2024;-12'000\n",
                r#"{"date": "Datum", "amount": "Betrag", "decimal": "point", "thousands": "'"}"#,
                vec![a(2, "2024-01-31", 123450, 2), a(3, "2024-01-31", -12000, 0)],
            ),
            (
                "thousands dot implies a decimal comma",
                "Datum;Betrag\n31.01.2024;1.234\n",
                r#"{"date": "Datum", "amount": "Betrag", "thousands": "."}"#,
                vec![a(2, "2024-01-31", 1234, 0)],
            ),
            (
                "a direction column wins over the sign",
                "Date;Amount;D/C\n2024-01-01;10,00;D\n2024-01-02;-5,00;C\n2024-01-03;1,00;X\n2024-01-04;-2,00;\n",
                r#"{"date": "Date", "amount": "Amount", "direction": "d/c", "decimal": "comma"}"#,
                vec![
                    a(2, "2024-01-01", -1000, 2),
                    a(3, "2024-01-02", 500, 2),
                    Err("4 amount: `X` in column `D/C` is neither a credit (CR, H) nor a debit (DR, S) mark".into()),
                    a(5, "2024-01-04", -200, 2),
                ],
            ),
            (
                "a direction after the amount",
                "Date,Amount\n2024-01-01,\"1,100.00 CR\"\n2024-01-02,5.00 DR\n2024-01-03,+ £1.00\n",
                r#"{"date": "Date", "amount": "Amount", "sign": "inverted"}"#,
                vec![
                    a(2, "2024-01-01", 110000, 2),
                    a(3, "2024-01-02", -500, 2),
                    a(4, "2024-01-03", -100, 2),
                ],
            ),
            (
                "amounts that are not amounts",
                "Date,Amount\n2024-01-01,\"12,50\"\n2024-01-02,12.3.4\n2024-01-03,\n2024-01-04,abc\n2024-01-05,\"1,2345.00\"\n",
                r#"{"date": "Date", "amount": "Amount", "decimal": "point"}"#,
                vec![
                    Err("2 amount: `12,50` in column `Amount` is not an amount".into()),
                    Err("3 amount: `12.3.4` in column `Amount` is not an amount".into()),
                    Err("4 amount: the amount (`Amount`) is empty".into()),
                    Err("5 amount: `abc` in column `Amount` is not an amount".into()),
                    Err("6 amount: `1,2345.00` in column `Amount` is not an amount".into()),
                ],
            ),
            (
                "debit and credit both filled, or both empty",
                "Date,Out,In\n2024-01-01,1.00,2.00\n2024-01-02,,\n2024-01-03,-4.00,\n",
                r#"{"date": "Date", "debit": "Out", "credit": "In"}"#,
                vec![
                    Err("2 amount: both `Out` (1.00) and `In` (2.00) are filled".into()),
                    Err("3 amount: no amount: `Out` and `In` is empty".into()),
                    a(4, "2024-01-03", -400, 2),
                ],
            ),
            (
                "dates that are not dates",
                "Date,Amount\n2024-02-30,1\n,1\nyesterday,1\n31.12.2024 x,1\n",
                r#"{"date": "Date", "amount": "Amount"}"#,
                vec![
                    Err("2 date: `2024-02-30` is not a date".into()),
                    Err("3 date: the date is empty".into()),
                    Err("4 date: `yesterday` is not a date".into()),
                    Err("5 date: `31.12.2024 x` is not a date".into()),
                ],
            ),
            (
                "a date format that does not match",
                "Date,Amount\n2024-01-02,1\n02.01.2024,1\n",
                r#"{"date": "Date", "amount": "Amount", "date_format": "%d.%m.%Y"}"#,
                vec![
                    Err("2 date: `2024-01-02` does not match the date format `%d.%m.%Y`".into()),
                    a(3, "2024-01-02", 1, 0),
                ],
            ),
        ];
        for (name, text, mapping, want) in cases {
            assert_eq!(amounts(&rows_of(text, mapping)), want, "{name}");
        }
    }

    #[test]
    fn rows_are_numbered_by_the_lines_of_the_file() {
        // Blank lines, CRLF, a lone CR and a quoted line break all count as lines.
        let text = "Date,Memo,Amount\n\n2024-01-01,a,1\r\n\r\n2024-01-02,\"two\nlines\",2\r\
                    2024-01-03,c,3\n\n\n2024-01-04,d,4";
        let rows = rows_of(
            text,
            r#"{"date": "Date", "amount": "Amount", "description": "Memo"}"#,
        );
        let lines: Vec<(u32, String)> = rows
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| (r.row, r.description.clone()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (3, "a".into()),
                (5, "two lines".into()),
                (7, "c".into()),
                (10, "d".into())
            ]
        );
        let (parsed, _, _) = parse(text, None).expect("generic");
        assert_eq!(parsed.rows, rows);
    }

    #[test]
    fn text_columns_become_merchant_description_category_and_id() {
        let text = "Date;Payee;Memo;Notes;Cat;Ref;Cur;Amount\n\
                    2024-01-02;  ACME  ;\"two\nlines\";more;Food;r-1;eur;1,00\n\
                    2024-01-03;;;;;;;2,00\n\
                    2024-01-04;;;;;;EURO;2,00\n";
        let rows = rows_of(
            text,
            r#"{"date": "Date", "amount": "Amount", "merchant": "Payee",
                "description": ["Memo", "Notes"], "category": "Cat", "external_id": "Ref",
                "currency": "Cur"}"#,
        );
        let first = rows[0].as_ref().expect("row");
        assert_eq!(first.row, 2);
        assert_eq!(first.merchant.as_deref(), Some("ACME"));
        assert_eq!(first.description, "two lines more");
        assert_eq!(first.category.as_deref(), Some("Food"));
        assert_eq!(first.external_id.as_deref(), Some("r-1"));
        assert_eq!(first.currency.as_deref(), Some("EUR"));
        assert_eq!(
            first.amount,
            Decimal {
                units: 100,
                scale: 2
            }
        );
        let second = rows[1].as_ref().expect("row");
        assert_eq!(second.row, 4);
        assert_eq!(
            (
                &second.merchant,
                second.description.as_str(),
                &second.category,
                &second.external_id,
                &second.currency
            ),
            (&None, "", &None, &None, &None)
        );
        assert_eq!(
            rows[2],
            rejected(5, "currency", "`EURO` is not an ISO 4217 currency code")
        );
    }

    #[test]
    fn an_account_column_makes_statements() {
        let text = "Konto;Datum;Betrag;Währung\n\
                    A;01.01.2024;1,00;EUR\n\
                    B;01.01.2024;2,00;USD\n\
                    A;02.01.2024;3,00;EUR\n\
                    C;02.01.2024;4,00;EUR\n\
                    C;03.01.2024;5,00;CHF\n";
        let mapping = r#"{"date": "Datum", "amount": "Betrag", "currency": "Währung",
            "account": "Konto"}"#;
        let m: Mapping = serde_json::from_str(mapping).expect("m");
        let (parsed, _, _) = parse(text, Some(&m)).expect("parse");
        // One statement per account, its currency only when all its rows agree.
        assert_eq!(
            parsed.statements,
            vec![
                statement(Some("A"), Some("EUR")),
                statement(Some("B"), Some("USD")),
                statement(Some("C"), None),
            ]
        );
        let of: Vec<usize> = parsed
            .rows
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r.statement)
            .collect();
        assert_eq!(of, vec![0, 1, 0, 2, 2]);
    }

    #[test]
    fn ambiguous_dates_are_decided_per_file() {
        struct Case {
            text: &'static str,
            order: Option<&'static str>,
            dates: &'static [&'static str],
            decided: Option<DateOrder>,
            warned: bool,
        }
        let cases = [
            // A second component above 12: month-first, for every row.
            Case {
                text: "Date,Amount\n03/15/2024,1\n04/01/2024,2\n",
                order: None,
                dates: &["2024-03-15", "2024-04-01"],
                decided: Some(DateOrder::MonthFirst),
                warned: false,
            },
            // A first component above 12 anywhere: day-first, for every row.
            Case {
                text: "Date,Amount\n04/01/2024,1\n15/03/2024,2\n",
                order: None,
                dates: &["2024-01-04", "2024-03-15"],
                decided: Some(DateOrder::DayFirst),
                warned: false,
            },
            Case {
                text: "Date,Amount\n04-01-24,1\n13-03-24,2\n",
                order: None,
                dates: &["2024-01-04", "2024-03-13"],
                decided: Some(DateOrder::DayFirst),
                warned: false,
            },
            // Nothing decides: `/` reads month-first, `-` day-first, with a warning.
            Case {
                text: "Date,Amount\n04/01/2024,1\n",
                order: None,
                dates: &["2024-04-01"],
                decided: None,
                warned: true,
            },
            Case {
                text: "Date,Amount\n04-01-2024,1\n",
                order: None,
                dates: &["2024-01-04"],
                decided: None,
                warned: true,
            },
            // Same day and month: nothing to decide, nothing to warn about.
            Case {
                text: "Date,Amount\n01/01/2024,1\n",
                order: None,
                dates: &["2024-01-01"],
                decided: None,
                warned: false,
            },
            // The mapping's order wins.
            Case {
                text: "Date,Amount\n04/01/2024,1\n",
                order: Some("day_first"),
                dates: &["2024-01-04"],
                decided: Some(DateOrder::DayFirst),
                warned: false,
            },
        ];
        for case in cases {
            let json = match case.order {
                Some(o) => {
                    format!(r#"{{"date": "Date", "amount": "Amount", "date_order": "{o}"}}"#)
                }
                None => r#"{"date": "Date", "amount": "Amount"}"#.to_owned(),
            };
            let m: Mapping = serde_json::from_str(&json).expect("m");
            let (parsed, used, _) = parse(case.text, Some(&m)).expect(case.text);
            let dates: Vec<String> = parsed
                .rows
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|r| r.date.to_string())
                .collect();
            assert_eq!(dates, case.dates, "{}", case.text);
            assert_eq!(used.date_order, case.decided, "{}", case.text);
            assert_eq!(
                !parsed.warnings.is_empty(),
                case.warned,
                "{}: {:?}",
                case.text,
                parsed.warnings
            );
            // Without a mapping the generic recogniser decides the same way.
            if case.order.is_none() {
                let (generic, _, name) = parse(case.text, None).expect(case.text);
                assert_eq!(name, Some("generic"));
                assert_eq!(generic.rows, parsed.rows, "{}", case.text);
            }
        }
        // A month-first row in a day-first file is rejected, not misread.
        let rows = rows_of(
            "Date,Amount\n15/03/2024,1\n03/15/2024,2\n",
            r#"{"date": "Date", "amount": "Amount"}"#,
        );
        assert_eq!(
            rows[1],
            rejected(
                3,
                "date",
                "`03/15/2024` is not a date in the file's day-first order"
            )
        );
    }

    #[test]
    fn date_shapes() {
        let k = |y, m, d| Some(Shape::Known { y, m, d });
        let amb = |a, b, y, sep| Some(Shape::Ambiguous { a, b, y, sep });
        for (cell, want) in [
            ("2024-01-31", k(2024, 1, 31)),
            ("2024/01/31", k(2024, 1, 31)),
            ("2018-02-25 12:34:56 +0000", k(2018, 2, 25)),
            ("2018-03-01T11:33:59", k(2018, 3, 1)),
            ("2018-03-01T11:33:59Z", k(2018, 3, 1)),
            ("20240131", k(2024, 1, 31)),
            ("31.01.2024", k(2024, 1, 31)),
            ("1.2.24", k(2024, 2, 1)),
            ("12-Dec-2019", k(2019, 12, 12)),
            ("9 Feb 2021", k(2021, 2, 9)),
            ("9. Feb. 2021", k(2021, 2, 9)),
            ("Feb 9, 2021", k(2021, 2, 9)),
            ("3 März 2024", k(2024, 3, 3)),
            ("3 Mrz 2024", k(2024, 3, 3)),
            ("1 okt 99", k(1999, 10, 1)),
            ("24 Sept 2024", k(2024, 9, 24)),
            ("08/17/2022", amb(8, 17, 2022, '/')),
            ("1/2/24", amb(1, 2, 2024, '/')),
            ("04-01-2024", amb(4, 1, 2024, '-')),
            ("Pending", None),
            ("", None),
            ("12.50", None),
            ("2024-01", None),
            ("2024-01-02 extra", None),
            ("2024-01-02T", None),
            ("Mon 9 Feb 2021", None),
            ("123/4/2024", None),
            ("1/2/202", None),
            ("-2024-01-02", None),
            ("9 Xyz 2021", None),
        ] {
            assert_eq!(date_shape(cell), want, "{cell:?}");
        }
    }

    #[test]
    fn amount_cells() {
        use DecimalMark::{Comma, Point};
        let d = |units, scale| Decimal { units, scale };
        let ok = |value, dir, currency: Option<&str>| {
            Ok(Some((value, dir, currency.map(str::to_owned))))
        };
        for (cell, mark, thousands, want) in [
            (
                "£1,183.23",
                Point,
                None,
                ok(d(118323, 2), None, Some("GBP")),
            ),
            (
                "+ £1,100.00",
                Point,
                None,
                ok(d(110000, 2), None, Some("GBP")),
            ),
            (
                "1,100.00 CR",
                Point,
                None,
                ok(d(110000, 2), Some(Dir::In), None),
            ),
            ("5.00 dr", Point, None, ok(d(500, 2), Some(Dir::Out), None)),
            ("12,50 S", Comma, None, ok(d(1250, 2), Some(Dir::Out), None)),
            ("12,50 H", Comma, None, ok(d(1250, 2), Some(Dir::In), None)),
            ("$1,036.47", Point, None, ok(d(103647, 2), None, None)),
            ("-17,22", Comma, None, ok(d(-1722, 2), None, None)),
            ("1.234,56", Comma, None, ok(d(123456, 2), None, None)),
            ("EUR 3,00", Comma, None, ok(d(300, 2), None, Some("EUR"))),
            ("-3,00 €", Comma, None, ok(d(-300, 2), None, Some("EUR"))),
            ("-10", Point, None, ok(d(-10, 0), None, None)),
            ("20.0", Point, None, ok(d(200, 1), None, None)),
            ("1 234,56", Comma, None, ok(d(123456, 2), None, None)),
            ("1_234.56", Point, Some('_'), ok(d(123456, 2), None, None)),
            ("", Point, None, Ok(None)),
            ("12.3.4", Point, None, Err(())),
            ("12,50", Point, None, Err(())),
            ("1,2345.00", Point, None, Err(())),
            (",123.00", Point, None, Err(())),
            ("1.234,56", Point, None, Err(())),
            ("abc", Point, None, Err(())),
            ("-", Point, None, Err(())),
        ] {
            let got =
                read_amount(cell, mark, thousands).map(|a| a.map(|a| (a.value, a.dir, a.currency)));
            assert_eq!(got, want, "{cell:?}");
        }
    }

    #[test]
    fn decimal_marks_are_decided_by_the_amounts() {
        use DecimalMark::{Comma, Point};
        for (cells, semicolon, want) in [
            (&["-17,22"][..], true, Comma),
            (&["-98,76", "1.234,56"], true, Comma),
            (&["1.234,56"], false, Comma),
            (&["12.50", "3"], false, Point),
            (&["1,234.00", "5"], true, Point),
            (&["1.234.567"], false, Comma),
            (&["1,234,567"], true, Point),
            (&["1.234"], true, Comma),
            (&["1.234"], false, Point),
            (&["12.3.4", "1.00", "2.00"], false, Point),
            (&[], true, Comma),
            (&[], false, Point),
        ] {
            assert_eq!(
                vote_mark(cells.iter().copied(), semicolon),
                want,
                "{cells:?}"
            );
        }
        // Without a mapping the German generic layout reads decimal commas.
        let (parsed, used, name) = parse(
            "Datum;Empfänger;Betrag\n01.02.2024;X;-1.250,00\n02.02.2024;Y;3,5\n",
            None,
        )
        .expect("parse");
        assert_eq!(name, Some("generic"));
        assert_eq!(used.decimal, Some(DecimalSeparator::Comma));
        assert_eq!(
            amounts(&parsed.rows),
            vec![
                Ok((2, "2024-02-01".into(), -125000, 2)),
                Ok((3, "2024-02-02".into(), 35, 1))
            ]
        );
    }

    #[test]
    fn delimiters_are_detected() {
        for (text, want) in [
            ("a,b,c\n1,2,3\n", b','),
            ("a;b;c\n1;2,5;3\n4;5,5;6\n", b';'),
            ("Buchungstag;Betrag\n02.03.2018;-17,22\n", b';'),
            ("a\tb\tc\n\"x, y\"\t2,5\t3\n", b'\t'),
            ("a|b|c\n1|2|3\n", b'|'),
            ("\"a;b\",c,d\n\"x;y;z\",2,3\n", b','),
            ("\"multi\nline;;;\",b\n1,2\n", b','),
            (
                "Completed Date , Description , Paid Out (EUR)\n9 Feb 2021 , Groceries , 20.00\n",
                b',',
            ),
            ("one column\nvalue\n", b','),
            ("", b','),
            (
                "Kontonummer:;123\nDatum;Text;Betrag;Saldo\n1;2;3;4\n1;2;3;4\n1;2;3;4\n",
                b';',
            ),
            ("12\" pizza;1,50\n2\" cake;2,00\n", b';'),
        ] {
            assert_eq!(
                char::from(detect_delimiter(text)),
                char::from(want),
                "{text:?}"
            );
        }
    }

    #[test]
    fn sniffing_tells_csv_from_other_formats() {
        for (head, want) in [
            ("Date,Amount\n2024-01-01,1\n", true),
            ("\u{FEFF}Date Processed,Description,Amount,\n", true),
            ("Buchungstag;Betrag\n", true),
            ("a\tb\n", true),
            ("OFXHEADER:100\nDATA:OFXSGML\n", false),
            ("<?xml version=\"1.0\"?><Document>", false),
            ("\n\n<OFX>", false),
            (":20:STARTUMS\n:25:123\n", false),
            (":940:\n:20:940S130101\n", false),
            ("{1:F01BANK}", false),
            ("!Type:Bank\nD1/2/24\n", false),
            ("just some words\n", false),
            ("", false),
            ("\0\u{1}\u{2},\u{3}\n", false),
        ] {
            assert_eq!(sniff(head), want, "{head:?}");
        }
    }

    #[test]
    fn skip_rows_counts_lines_as_rows_are_numbered() {
        for (text, n, rest, skipped) in [
            ("a\nb\nc", 2, "c", 2),
            ("a\r\nb\r\nc", 1, "b\r\nc", 1),
            ("a\rb\rc", 2, "c", 2),
            ("a\n\nc", 2, "c", 2),
            ("a\nb", 5, "", 2),
            ("ä\nö", 1, "ö", 1),
            ("abc", 0, "abc", 0),
        ] {
            assert_eq!(skip_lines(text, n), (rest, skipped), "{text:?}");
        }
    }

    #[test]
    fn sniffing_the_fixtures() {
        let dir = format!(
            "{}/../../../shared/fixtures/imports",
            env!("CARGO_MANIFEST_DIR")
        );
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("skipped: ../shared/fixtures absent");
            return;
        };
        let mut seen = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                continue;
            }
            let bytes = std::fs::read(entry.path()).expect("read");
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
            assert_eq!(sniff(&head), name.ends_with(".csv"), "{name}");
            seen += 1;
        }
        assert!(seen > 20, "{seen}");
    }

    #[test]
    fn a_preamble_before_the_header_is_skipped_and_said() {
        let text = "Konto;DE00 1234\nZeitraum;Januar\n\nBuchungstag;Verwendungszweck;Betrag\n02.01.2024;Miete;-1,00\n";
        let (parsed, used, name) = parse(text, None).expect("parse");
        assert_eq!(name, Some("generic"));
        assert_eq!(used.skip_rows, 3);
        assert_eq!(
            parsed.warnings,
            vec![Warning {
                row: None,
                message: "lines 1–3 before the header were skipped".into()
            }]
        );
        assert_eq!(
            amounts(&parsed.rows),
            vec![Ok((5, "2024-01-02".into(), -100, 2))]
        );
        let (again, _, _) = parse(text, Some(&used)).expect("again");
        assert_eq!(again.rows, parsed.rows);
    }

    #[test]
    fn the_generic_recogniser_reads_common_header_words() {
        let (parsed, used, name) = parse(
            "Posting Date,Payee,Memo,Amount (GBP),Balance (GBP)\n02/01/2024,TESCO,groceries,-12.30,100.00\n",
            None,
        )
        .expect("parse");
        assert_eq!(name, Some("generic"));
        assert_eq!(
            used,
            Mapping {
                date: "Posting Date".into(),
                amount: Some("Amount (GBP)".into()),
                merchant: Some("Payee".into()),
                description: vec!["Memo".into()],
                decimal: Some(DecimalSeparator::Point),
                delimiter: Some(','),
                ..Mapping::default()
            }
        );
        let row = parsed.rows[0].as_ref().expect("row");
        assert_eq!(
            (
                row.merchant.as_deref(),
                row.description.as_str(),
                row.currency.as_deref()
            ),
            (Some("TESCO"), "groceries", Some("GBP"))
        );
        // Soll/Haben, Buchungstext as description only without a Verwendungszweck.
        let (parsed, used, _) = parse(
            "Buchungstag;Valuta;Buchungstext;Auftraggeber;Soll;Haben;Währung\n05.01.2024;04.01.2024;Lastschrift Strom;Stadtwerke;45,00;;EUR\n",
            None,
        )
        .expect("parse");
        assert_eq!(used.debit.as_deref(), Some("Soll"));
        assert_eq!(used.credit.as_deref(), Some("Haben"));
        assert_eq!(used.value_date.as_deref(), Some("Valuta"));
        let row = parsed.rows[0].as_ref().expect("row");
        assert_eq!(
            row.amount,
            Decimal {
                units: -4500,
                scale: 2
            }
        );
        assert_eq!(row.description, "Lastschrift Strom");
        assert_eq!(row.merchant.as_deref(), Some("Stadtwerke"));
        assert_eq!(row.value_date, Some(day("2024-01-04")));
        // A duplicate header name is named by position.
        let (_, used, _) = parse("Date,Amount,Amount\n2024-01-01,1,2\n", None).expect("parse");
        assert_eq!(used.amount.as_deref(), Some("#1"));
    }

    #[test]
    fn mappings_are_checked_field_by_field() {
        let base = || Mapping {
            date: "Date".into(),
            amount: Some("Amount".into()),
            ..Mapping::default()
        };
        assert_eq!(base().check(), Ok(()));
        let cases: Vec<(Mapping, &str)> = vec![
            (
                Mapping {
                    date: " ".into(),
                    ..base()
                },
                "date:",
            ),
            (
                Mapping {
                    amount: None,
                    ..base()
                },
                "amount: an `amount` column",
            ),
            (
                Mapping {
                    debit: Some("Out".into()),
                    ..base()
                },
                "amount: give an `amount` column or",
            ),
            (
                Mapping {
                    value_date: Some("#99999999999999999999999".into()),
                    ..base()
                },
                "value_date: `#99999999999999999999999` is not a column position",
            ),
            (
                Mapping {
                    has_header: Some(false),
                    ..base()
                },
                "date: without a header row",
            ),
            (
                Mapping {
                    date_format: Some("%Q".into()),
                    ..base()
                },
                "date_format: `%Q` is not a strftime pattern",
            ),
            (
                Mapping {
                    date_format: Some("%Y".into()),
                    ..base()
                },
                "date_format: `%Y` does not give a whole date",
            ),
            (
                Mapping {
                    date_format: Some("%d.%m.%Y".into()),
                    date_order: Some(DateOrder::DayFirst),
                    ..base()
                },
                "date_order:",
            ),
            (
                Mapping {
                    thousands: Some('5'),
                    ..base()
                },
                "thousands: `5`",
            ),
            (
                Mapping {
                    thousands: Some(','),
                    decimal: Some(DecimalSeparator::Comma),
                    ..base()
                },
                "thousands: `,` is also the decimal mark",
            ),
            (
                Mapping {
                    thousands: Some(';'),
                    delimiter: Some(';'),
                    ..base()
                },
                "thousands: `;` is also the delimiter",
            ),
            (
                Mapping {
                    delimiter: Some('a'),
                    ..base()
                },
                "delimiter:",
            ),
            (
                Mapping {
                    delimiter: Some('"'),
                    ..base()
                },
                "delimiter:",
            ),
            (
                Mapping {
                    delimiter: Some('€'),
                    ..base()
                },
                "delimiter:",
            ),
            (
                Mapping {
                    encoding: Some("klingon".into()),
                    ..base()
                },
                "encoding: `klingon`",
            ),
            (
                Mapping {
                    description: vec!["".into()],
                    ..base()
                },
                "description:",
            ),
        ];
        for (m, want) in cases {
            let got = m.check().unwrap_err();
            assert!(got.starts_with(want), "{got} / {want}");
        }
        for ok in [
            Mapping {
                debit: Some("#1".into()),
                credit: Some("#2".into()),
                amount: None,
                has_header: Some(false),
                date: "#0".into(),
                ..base()
            },
            Mapping {
                credit: Some("In".into()),
                amount: None,
                ..base()
            },
            Mapping {
                date_format: Some("%Y-%m-%d %H:%M:%S %z".into()),
                ..base()
            },
            Mapping {
                date_format: Some("%d-%b-%Y".into()),
                delimiter: Some('\t'),
                encoding: Some("latin1".into()),
                ..base()
            },
            Mapping {
                thousands: Some('\''),
                decimal: Some(DecimalSeparator::Point),
                ..base()
            },
        ] {
            assert_eq!(ok.check(), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn mappings_as_json() {
        let m: Mapping = serde_json::from_str(
            r##"{"date": "Buchungstag", "date_format": "%d.%m.%Y", "value_date": "#1",
                "debit": "Soll", "credit": "Haben", "sign": "inverted", "decimal": "comma",
                "thousands": ".", "currency": "Währung", "merchant": "Empfänger",
                "description": "Verwendungszweck", "external_id": "Id", "category": "Kat",
                "skip_rows": 4, "delimiter": ";", "encoding": "windows-1252",
                "has_header": true, "direction": "S/H", "account": "Konto"}"##,
        )
        .expect("json");
        assert_eq!(m.description, vec!["Verwendungszweck".to_owned()]);
        assert_eq!(m.sign, Sign::Inverted);
        assert_eq!(m.thousands, Some('.'));
        assert_eq!(m.skip_rows, 4);
        assert_eq!(m.check(), Ok(()));
        let back: Mapping =
            serde_json::from_str(&serde_json::to_string(&m).expect("ser")).expect("de");
        assert_eq!(back, m);
        let list: Mapping =
            serde_json::from_str(r#"{"date": "d", "amount": "a", "description": ["x", "y"]}"#)
                .expect("list");
        assert_eq!(list.description, vec!["x".to_owned(), "y".to_owned()]);
        assert_eq!(
            serde_json::to_string(&list).expect("ser"),
            r#"{"date":"d","amount":"a","sign":"normal","description":["x","y"]}"#
        );
        for bad in [
            r#"{"amount": "a"}"#,
            r#"{"date": "d", "amount": "a", "colour": "red"}"#,
            r#"{"date": "d", "amount": "a", "sign": "sideways"}"#,
            r#"{"date": "d", "amount": "a", "decimal": "dot"}"#,
            r#"{"date": "d", "amount": "a", "delimiter": ";;"}"#,
            r#"{"date": "d", "amount": "a", "description": 3}"#,
        ] {
            assert!(serde_json::from_str::<Mapping>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_preset_is_a_valid_mapping() {
        let mut names = std::collections::HashSet::new();
        for preset in PRESETS {
            assert!(names.insert(preset.name), "{} twice", preset.name);
            let m: Mapping = serde_json::from_str(preset.mapping)
                .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            assert_eq!(m.check(), Ok(()), "{}", preset.name);
            // The preset recognises its own header.
            let header: Vec<String> = preset
                .header
                .iter()
                .map(|h| h.replace('*', "EUR"))
                .collect();
            assert_eq!(
                preset_for(&header).map(|p| p.0),
                Some(preset.name),
                "{}",
                preset.name
            );
        }
        // Wildcards resolve to the header's own text: a GBP Revolut export.
        let (_, used, name) = parse(
            "Completed Date , Description , Paid Out (GBP) , Paid In (GBP) , Balance (GBP)\n9 Feb 2021 , Tea , 2.00 , , 8.00\n",
            None,
        )
        .expect("gbp");
        assert_eq!(name, Some("revolut_legacy"));
        assert_eq!(used.debit.as_deref(), Some("Paid Out (GBP)"));
    }

    #[test]
    fn truncated_files_never_panic() {
        for case in fixture_cases() {
            let path = format!(
                "{}/../../../shared/fixtures/imports/{}",
                env!("CARGO_MANIFEST_DIR"),
                case.file
            );
            let Ok(bytes) = std::fs::read(path) else {
                eprintln!("skipped: ../shared/fixtures absent");
                return;
            };
            let preset: Option<Mapping> = PRESETS
                .iter()
                .find(|p| p.name == case.preset)
                .and_then(|p| serde_json::from_str(p.mapping).ok());
            for end in 0..=bytes.len() {
                let text = encoding_rs::WINDOWS_1252.decode(&bytes[..end]).0;
                let _ = parse(&text, None);
                let _ = parse(&text, preset.as_ref());
                let lossy = String::from_utf8_lossy(&bytes[..end]);
                let _ = parse(&lossy, None);
                let _ = sniff(&lossy);
                let _ = detect_delimiter(&lossy);
            }
        }
        // Random text over the characters that matter to CSV, dates and amounts.
        let alphabet: Vec<char> = ",;|\t\"\n\r 0123456789.-/+£€()aDCRTSHpending#:\u{0}ä"
            .chars()
            .collect();
        let mappings: Vec<Mapping> = [
            r##"{"date": "#0", "amount": "#1", "has_header": false}"##,
            r##"{"date": "#0", "debit": "#1", "credit": "#2", "direction": "#3",
                "has_header": false, "skip_rows": 1, "sign": "inverted"}"##,
            r##"{"date": "#1", "amount": "#0", "date_format": "%d.%m.%Y", "thousands": " "}"##,
        ]
        .iter()
        .map(|m| serde_json::from_str(m).expect(m))
        .collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            usize::try_from(seed >> 33).unwrap_or(0)
        };
        for _ in 0..3000 {
            let len = next() % 80;
            let text: String = (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            let _ = parse(&text, None);
            for m in &mappings {
                let _ = parse(&text, Some(m));
            }
            let _ = sniff(&text);
            let _ = date_shape(&text);
            let _ = read_amount(&text, DecimalMark::Comma, None);
        }
        for cell in [
            "",
            "-",
            "/",
            "1/",
            "1//",
            "ä",
            "2024-",
            "Feb",
            "Feb 9,",
            "12:00",
            "99999999999999/1/1",
            "1/1/99999",
        ] {
            let _ = date_shape(cell);
            let _ = read_amount(cell, DecimalMark::Point, Some('ä'));
        }
    }
}
