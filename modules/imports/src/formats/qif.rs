//! QIF (Quicken Interchange Format): `!Type:Bank`, `!Type:CCard` and `!Type:Cash` sections
//! of records, one field a line (`D` date, `T`/`U` amount, `P` payee, `M` memo, `N` check
//! number, `L` category, `S`/`E`/`$` splits), each record ended by `^`. An `!Account` block
//! (`N` name, `T` type, `^`) names the account of the section after it. Other sections
//! (`!Type:Invst`, `!Type:Cat`, …) and `!Option:`/`!Clear:` lines are skipped with a warning.
//!
//! QIF has no date format: the file is read month-first (the QIF convention) unless a date's
//! first component is above 12, then day-first. Amounts use a decimal point with thousands
//! commas, unless the file's amounts only make sense with a decimal comma (`-25,00`).

use chrono::NaiveDate;

use super::{
    Decimal, DecimalMark, FormatError, Parsed, ParsedRow, Rejected, StatementInfo, Warning,
    parse_decimal,
};

/// Whether the start of a file looks like QIF: its first non-blank line starts with
/// `!Type:`, `!Account` or `!Option` (any case).
pub fn sniff(head: &str) -> bool {
    head.trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .is_some_and(|first| {
            ["!type:", "!account", "!option"]
                .iter()
                .any(|p| starts_with_ci(first, p))
        })
}

/// Parses a decoded QIF file: one [`StatementInfo`] per transaction section (its account
/// named by the `!Account` block before it, if any; no currency: QIF has none), one row per
/// record, whose `row` is the record's first line (1-based).
///
/// - `merchant` is `P`, `description` is `M`, followed by `; Check <n>` when `N` is a number
///   (`ATM`, `DEP`… are dropped), `category` is `L` as written (`Parent:Child`, `[Account]`).
/// - A split record stays one row with its total `T`; a [`Warning`] says when its `$` parts
///   do not add up to `T`.
/// - A record without a readable date or amount is a [`Rejected`] row (`date`, `amount`).
/// - A file without any `!Type:` header is a [`FormatError`].
pub fn parse(text: &str) -> Result<Parsed, FormatError> {
    let lines = lines(text.trim_start_matches('\u{feff}'));
    if !lines
        .iter()
        .any(|(_, l)| starts_with_ci(l.trim(), "!type:"))
    {
        return Err(FormatError("not a QIF file: no !Type: header".into()));
    }
    let mut out = Parsed::default();
    let records = records(&lines, &mut out);

    // The date order and decimal mark are the file's, not the row's.
    let parts: Vec<DateParts> = records
        .iter()
        .filter_map(|r| r.field('D'))
        .filter_map(date_parts)
        .filter(|p| !p.iso)
        .collect();
    let first_over = parts.iter().any(|p| p.first > 12);
    let second_over = parts.iter().any(|p| p.second > 12);
    let day_first = first_over && !second_over;
    if first_over && second_over {
        out.warnings.push(Warning {
            row: None,
            message: "some dates are day-first and others month-first: read month-first".into(),
        });
    }
    let amounts = || {
        records.iter().flat_map(|r| {
            r.fields
                .iter()
                .filter(|(c, _)| matches!(c, 'T' | 'U' | '$'))
                .map(|(_, v)| *v)
        })
    };
    let comma = amounts().any(|v| decimal_evidence(v) == Some(DecimalMark::Comma));
    let point = amounts().any(|v| decimal_evidence(v) == Some(DecimalMark::Point));
    let mark = if comma && !point {
        DecimalMark::Comma
    } else {
        DecimalMark::Point
    };

    for r in &records {
        let row = record_row(r, day_first, mark, &mut out.warnings);
        out.rows.push(row);
    }
    Ok(out)
}

/// A record of a transaction section: its first line, its statement and its fields.
struct Record<'a> {
    line: u32,
    statement: usize,
    fields: Vec<(char, &'a str)>,
}

impl<'a> Record<'a> {
    /// The first field with this code, trimmed.
    fn field(&self, code: char) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| *v)
    }

    /// The first non-empty field with this code.
    fn text(&self, code: char) -> Option<String> {
        self.field(code)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    /// Before any header.
    Outside,
    Account,
    Transactions(usize),
    Ignored,
}

/// Reads the sections into records, filling `out.statements` and the section warnings.
fn records<'a>(lines: &[(u32, &'a str)], out: &mut Parsed) -> Vec<Record<'a>> {
    let mut records = Vec::new();
    let mut section = Section::Outside;
    let mut current: Option<Record> = None;
    let mut account_name: Option<String> = None;
    let mut pending_account: Option<String> = None;
    let mut warned_outside = false;
    let mut warn = |row: u32, message: String| {
        out.warnings.push(Warning {
            row: Some(row),
            message,
        })
    };
    for &(n, raw) in lines {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('!') {
            if let Some(r) = current.take() {
                warn(r.line, "the record is not ended by ^".into());
                records.push(r);
            }
            if section == Section::Account
                && let Some(name) = account_name.take()
            {
                pending_account = Some(name);
            }
            if starts_with_ci(line, "!type:") {
                let kind = line.get(6..).unwrap_or("").trim();
                if ["bank", "ccard", "cash"]
                    .iter()
                    .any(|k| kind.eq_ignore_ascii_case(k))
                {
                    if out.statements.is_empty() || pending_account.is_some() {
                        out.statements.push(StatementInfo {
                            account: pending_account.take(),
                            currency: None,
                        });
                    }
                    section = Section::Transactions(out.statements.len() - 1);
                } else {
                    warn(
                        n,
                        format!(
                            "section {line} ignored: only !Type:Bank, !Type:CCard and !Type:Cash are imported"
                        ),
                    );
                    pending_account = None;
                    section = Section::Ignored;
                }
            } else if starts_with_ci(line, "!account") {
                section = Section::Account;
                account_name = None;
            } else if starts_with_ci(line, "!option") || starts_with_ci(line, "!clear") {
                warn(n, format!("{line} ignored"));
            } else {
                warn(n, format!("unknown header {line}: its section is ignored"));
                section = Section::Ignored;
            }
            continue;
        }
        match section {
            Section::Account => {
                if line.starts_with('^') {
                    if let Some(name) = account_name.take() {
                        pending_account = Some(name);
                    }
                } else if let Some(name) = line.strip_prefix('N') {
                    let name = name.trim();
                    if !name.is_empty() {
                        account_name = Some(name.to_string());
                    }
                }
            }
            Section::Transactions(statement) => {
                if line.starts_with('^') {
                    if let Some(r) = current.take() {
                        records.push(r);
                    }
                } else {
                    let mut chars = line.chars();
                    let code = chars.next().unwrap_or(' ');
                    current
                        .get_or_insert_with(|| Record {
                            line: n,
                            statement,
                            fields: Vec::new(),
                        })
                        .fields
                        .push((code, chars.as_str().trim()));
                }
            }
            Section::Ignored => {}
            Section::Outside => {
                if !warned_outside {
                    warn(n, "text before the first !Type: header ignored".into());
                    warned_outside = true;
                }
            }
        }
    }
    if let Some(r) = current.take() {
        warn(r.line, "the last record is not ended by ^".into());
        records.push(r);
    }
    records
}

/// One record as a row.
fn record_row(
    r: &Record,
    day_first: bool,
    mark: DecimalMark,
    warnings: &mut Vec<Warning>,
) -> Result<ParsedRow, Rejected> {
    let reject = |field: &str, reason: String| Rejected {
        row: r.line,
        field: field.into(),
        reason,
    };
    let date_text = r
        .field('D')
        .filter(|d| !d.is_empty())
        .ok_or_else(|| reject("date", "the record has no date (D line)".into()))?;
    let date = date_parts(date_text)
        .ok_or_else(|| reject("date", format!("unreadable date {date_text:?}")))?
        .date(day_first)
        .ok_or_else(|| {
            let order = if day_first {
                "day-first"
            } else {
                "month-first"
            };
            reject(
                "date",
                format!("{date_text:?} is not a date (read {order})"),
            )
        })?;
    let amount_text = r
        .field('T')
        .filter(|t| !t.is_empty())
        .or_else(|| r.field('U').filter(|u| !u.is_empty()))
        .ok_or_else(|| reject("amount", "the record has no amount (T line)".into()))?;
    let amount = parse_decimal(amount_text, mark)
        .ok_or_else(|| reject("amount", format!("unreadable amount {amount_text:?}")))?;

    let splits: Vec<&str> = r
        .fields
        .iter()
        .filter(|(c, _)| *c == '$')
        .map(|(_, v)| *v)
        .collect();
    if !splits.is_empty() {
        let sum = splits
            .iter()
            .try_fold(Decimal { units: 0, scale: 0 }, |acc, s| {
                add(acc, parse_decimal(s, mark)?)
            });
        let message = match sum {
            None => Some("a split amount cannot be read: the total T is kept".to_string()),
            Some(sum) if !same(sum, amount) => Some(format!(
                "the split amounts add up to {}, not the total {}: the total is kept",
                show(sum),
                show(amount)
            )),
            Some(_) => None,
        };
        if let Some(message) = message {
            warnings.push(Warning {
                row: Some(r.line),
                message,
            });
        }
    }

    let mut description = r.text('M').unwrap_or_default();
    if let Some(check) = r.field('N')
        && !check.is_empty()
        && check.bytes().all(|c| c.is_ascii_digit())
    {
        if !description.is_empty() {
            description.push_str("; ");
        }
        description.push_str("Check ");
        description.push_str(check);
    }
    Ok(ParsedRow {
        row: r.line,
        date,
        value_date: None,
        amount,
        currency: None,
        merchant: r.text('P'),
        description,
        external_id: None,
        category: r.text('L'),
        statement: r.statement,
    })
}

/// A date's three numbers: `first/second/year`, or `year-month-day` when `iso`.
struct DateParts {
    first: u32,
    second: u32,
    year: i32,
    iso: bool,
}

impl DateParts {
    fn date(&self, day_first: bool) -> Option<NaiveDate> {
        let (month, day) = if day_first && !self.iso {
            (self.second, self.first)
        } else {
            (self.first, self.second)
        };
        NaiveDate::from_ymd_opt(self.year, month, day)
    }
}

/// `M/D/YY`, `MM/DD/YYYY`, `M/D'YY` (`'` years are 2000+), `1/ 2/99` (spaces ignored),
/// `-` or `.` separators, and `YYYY-MM-DD`. Plain two-digit years 00–69 are 20xx, 70–99 19xx.
fn date_parts(text: &str) -> Option<DateParts> {
    let mut groups: Vec<(u32, usize)> = Vec::new();
    let mut current: Option<(u32, usize)> = None;
    let mut apostrophe = false;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            let (v, n) = current.unwrap_or((0, 0));
            if n >= 4 {
                return None;
            }
            current = Some((v * 10 + d, n + 1));
        } else if matches!(c, '/' | '-' | '.' | '\'') || c.is_whitespace() {
            apostrophe |= c == '\'';
            groups.extend(current.take());
        } else {
            return None;
        }
    }
    groups.extend(current);
    let [(a, an), (b, bn), (c, cn)] = groups[..] else {
        return None;
    };
    if an == 4 && bn <= 2 && cn <= 2 && !apostrophe {
        return Some(DateParts {
            first: b,
            second: c,
            year: a as i32,
            iso: true,
        });
    }
    if an > 2 || bn > 2 {
        return None;
    }
    let year = match (cn, apostrophe) {
        (4, _) => c as i32,
        (1 | 2, true) => 2000 + c as i32,
        (1 | 2, false) if c < 70 => 2000 + c as i32,
        (1 | 2, false) => 1900 + c as i32,
        _ => return None,
    };
    Some(DateParts {
        first: a,
        second: b,
        year,
        iso: false,
    })
}

/// Which decimal mark an amount proves: its last `,` or `.` followed by other than exactly
/// three digits (three would be a thousands group), or the last of both marks.
fn decimal_evidence(text: &str) -> Option<DecimalMark> {
    let t = text.trim().trim_end_matches(|c: char| !c.is_ascii_digit());
    let pos = t.rfind([',', '.'])?;
    let both = t.contains(',') && t.contains('.');
    let after = &t[pos + 1..];
    let decimal = both
        || (!after.is_empty() && after.len() != 3 && after.bytes().all(|c| c.is_ascii_digit()));
    decimal.then(|| {
        if t[pos..].starts_with(',') {
            DecimalMark::Comma
        } else {
            DecimalMark::Point
        }
    })
}

/// `d` in units of `10^-scale` (`scale >= d.scale`).
fn rescale(d: Decimal, scale: u32) -> Option<i128> {
    d.units
        .checked_mul(10i128.checked_pow(scale.checked_sub(d.scale)?)?)
}

fn add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let scale = a.scale.max(b.scale);
    Some(Decimal {
        units: rescale(a, scale)?.checked_add(rescale(b, scale)?)?,
        scale,
    })
}

/// The same number, whatever the scales (`-98.05` = `-98.050`).
fn same(a: Decimal, b: Decimal) -> bool {
    let scale = a.scale.max(b.scale);
    rescale(a, scale).is_some() && rescale(a, scale) == rescale(b, scale)
}

/// `-9805` at scale 2 → `-98.05`.
fn show(d: Decimal) -> String {
    let digits = d.units.unsigned_abs().to_string();
    let scale = d.scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if d.units < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

fn starts_with_ci(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// The lines of `text` with their 1-based numbers; `\r\n`, `\n` and a lone `\r` end a line.
fn lines(text: &str) -> Vec<(u32, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i, mut n) = (0, 0, 0u32);
    while i < bytes.len() {
        if bytes[i] == b'\n' || bytes[i] == b'\r' {
            n = n.saturating_add(1);
            out.push((n, &text[start..i]));
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    if start < bytes.len() {
        out.push((n.saturating_add(1), &text[start..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Option<String> {
        crate::formats::fixture_text(name)
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn ok_rows(p: &Parsed) -> Vec<&ParsedRow> {
        p.rows.iter().map(|r| r.as_ref().expect("row")).collect()
    }

    /// (row, date, units at scale 2, merchant, description, category)
    type Want<'a> = (
        u32,
        NaiveDate,
        i128,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
    );

    fn check(p: &Parsed, want: &[Want]) {
        let rows = ok_rows(p);
        assert_eq!(rows.len(), want.len());
        for (r, &(line, d, units, merchant, description, category)) in rows.iter().zip(want) {
            let expected = ParsedRow {
                row: line,
                date: d,
                value_date: None,
                amount: Decimal { units, scale: 2 },
                currency: None,
                merchant: merchant.map(str::to_string),
                description: description.into(),
                external_id: None,
                category: category.map(str::to_string),
                statement: 0,
            };
            assert_eq!(**r, expected);
        }
    }

    #[test]
    fn cbb_fixture_every_row() {
        let Some(text) = fixture("qif_bank_splits_cbb.qif") else {
            return;
        };
        let p = parse(&text).unwrap();
        assert_eq!(p.statements, vec![StatementInfo::default()]);
        // Both split records add up (-53.30 - 44.75 = -98.05, 143.00 + 50.42 = 193.42).
        assert_eq!(p.warnings, vec![]);
        let y = |m, d| date(1997, m, d);
        #[rustfmt::skip]
        check(&p, &[
            (2, y(10, 11), -619, Some("AT&T/063"), "Phone Bill - September; Check 277", Some("Telephone")),
            (9, y(10, 11), -9805, Some("BofA"), "VISA - September; Check 278", Some("Textbooks")),
            (22, y(7, 12), -51343, Some("Sally Wood"), "VISA Bill - June; Check 331", Some("Credit Card")),
            (29, y(9, 20), -4000, Some("Withdrawal"), "Claremont", Some("Personal Cash")),
            (36, y(9, 30), -1399, Some("TCI"), "Cable - August; Check 276", Some("Entertainment")),
            (43, y(11, 24), -1500, Some("West Dorm"), "Dorm T-Shirts; Check 283", Some("Gifts")),
            (50, y(10, 27), -1000, Some("Scripps College"), "Orchestra T-Shirt; Check 279", Some("Clothing")),
            (57, y(6, 23), -435, Some("Eurest Dining"), "Check 323", Some("Dining-Out")),
            (63, y(9, 29), 19342, Some("Deposit"), "AE paycheck + reimbursement for Orientation", Some("Salary")),
        ]);
    }

    #[test]
    fn categories_fixture_every_row() {
        let Some(text) = fixture("qif_bank_categories_actual.qif") else {
            return;
        };
        let p = parse(&text).unwrap();
        assert_eq!(p.statements, vec![StatementInfo::default()]);
        assert_eq!(p.warnings, vec![]);
        let d = date(2018, 12, 19);
        #[rustfmt::skip]
        check(&p, &[
            (2, d, -10058, Some("Outlet"), "", Some("Usual Expenses:Shopping")),
            (7, d, -2015, Some("GroceriesYou"), "", Some("Groceries")),
            (12, d, -4060, Some("RestaurantExample"), "", Some("Food")),
        ]);
    }

    #[test]
    fn account_header_fixture_every_row() {
        let Some(text) = fixture("qif_account_header_actual.qif") else {
            return;
        };
        let p = parse(&text).unwrap();
        assert_eq!(
            p.statements,
            vec![StatementInfo {
                account: Some("Checking Main".into()),
                currency: None
            }]
        );
        assert_eq!(p.warnings, vec![]);
        check(
            &p,
            &[(6, date(2018, 12, 19), -2500, Some("COUNTY WASTE"), "", None)],
        );
    }

    #[test]
    fn truncated_prefixes_never_panic() {
        for name in [
            "qif_bank_splits_cbb.qif",
            "qif_bank_categories_actual.qif",
            "qif_account_header_actual.qif",
        ] {
            let Some(text) = fixture(name) else {
                return;
            };
            for end in (0..=text.len()).filter(|e| text.is_char_boundary(*e)) {
                let _ = parse(&text[..end]);
            }
        }
        // Cut after the first record's date: no amount yet, rejected, and flagged unended.
        let Some(text) = fixture("qif_bank_splits_cbb.qif") else {
            return;
        };
        let p = parse(&text[..text.find("T-6.19").unwrap()]).unwrap();
        let r = p.rows[0].as_ref().unwrap_err();
        assert_eq!((r.row, r.field.as_str()), (2, "amount"));
        assert_eq!(p.warnings[0].row, Some(2));
    }

    fn one(record: &str) -> Result<ParsedRow, Rejected> {
        let p = parse(&format!("!Type:Bank\n{record}\n^\n")).unwrap();
        assert_eq!(p.rows.len(), 1, "{record}");
        p.rows[0].clone()
    }

    #[test]
    fn dates_as_qif_writes_them() {
        for (text, want) in [
            ("1/2/99", date(1999, 1, 2)),
            ("01/02/99", date(1999, 1, 2)),
            ("1/ 2/99", date(1999, 1, 2)),
            (" 1/ 2/ 0", date(2000, 1, 2)),
            ("1/2'05", date(2005, 1, 2)),
            ("12/19' 5", date(2005, 12, 19)),
            ("1/2'99", date(2099, 1, 2)),
            ("1/2/69", date(2069, 1, 2)),
            ("1/2/70", date(1970, 1, 2)),
            ("1/2/2020", date(2020, 1, 2)),
            ("10-11-97", date(1997, 10, 11)),
            ("2020-03-04", date(2020, 3, 4)),
        ] {
            assert_eq!(
                one(&format!("D{text}\nT1.00")).unwrap().date,
                want,
                "{text}"
            );
        }
        for text in [
            "", "1/2", "1/2/3/4", "13/13/20", "2/30/20", "1/2/123", "Jan 2 20", "１/2/20",
        ] {
            let r = one(&format!("D{text}\nT1.00")).unwrap_err();
            assert_eq!((r.row, r.field.as_str()), (2, "date"), "{text}");
        }
    }

    #[test]
    fn day_first_is_decided_per_file() {
        let p = parse("!Type:Bank\nD1/2/2020\nT1\n^\nD25/12/2020\nT2\n^\n").unwrap();
        let rows = ok_rows(&p);
        assert_eq!(
            (rows[0].date, rows[1].date),
            (date(2020, 2, 1), date(2020, 12, 25))
        );
        let p = parse("!Type:Bank\nD1/2/2020\nT1\n^\nD12/25/2020\nT2\n^\n").unwrap();
        let rows = ok_rows(&p);
        assert_eq!(
            (rows[0].date, rows[1].date),
            (date(2020, 1, 2), date(2020, 12, 25))
        );
        // Both kinds: month-first, the day-first row rejected, and a warning.
        let p = parse("!Type:Bank\nD25/12/2020\nT1\n^\nD12/25/2020\nT2\n^\n").unwrap();
        assert_eq!(p.rows[0].as_ref().unwrap_err().field, "date");
        assert_eq!(p.rows[1].as_ref().unwrap().date, date(2020, 12, 25));
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn amounts_and_decimal_marks() {
        for (file, want) in [
            (
                "T-1,234.56",
                Decimal {
                    units: -123456,
                    scale: 2,
                },
            ),
            (
                "T1,234",
                Decimal {
                    units: 1234,
                    scale: 0,
                },
            ),
            (
                "T2700",
                Decimal {
                    units: 2700,
                    scale: 0,
                },
            ),
            (
                "U-3.10",
                Decimal {
                    units: -310,
                    scale: 2,
                },
            ),
            (
                "T-25,00",
                Decimal {
                    units: -2500,
                    scale: 2,
                },
            ),
            (
                "T-1.234,5",
                Decimal {
                    units: -12345,
                    scale: 1,
                },
            ),
        ] {
            assert_eq!(
                one(&format!("D1/2/20\n{file}")).unwrap().amount,
                want,
                "{file}"
            );
        }
        // T wins over U.
        assert_eq!(one("D1/2/20\nT5.00\nU5.0").unwrap().amount.units, 500);
        for record in ["D1/2/20", "D1/2/20\nT", "D1/2/20\nT12.3.4", "D1/2/20\nTabc"] {
            let r = one(record).unwrap_err();
            assert_eq!((r.row, r.field.as_str()), (2, "amount"), "{record}");
        }
        let r = one("PNo date\nT1.00").unwrap_err();
        assert_eq!((r.row, r.field.as_str()), (2, "date"));
    }

    #[test]
    fn fields_of_a_record() {
        let r = one("D1/2/20\nT-10.00\nN1001\nPShop\nM  memo text  \nL[Savings]\nCX\nA street")
            .unwrap();
        assert_eq!(r.merchant.as_deref(), Some("Shop"));
        assert_eq!(r.description, "memo text; Check 1001");
        assert_eq!(r.category.as_deref(), Some("[Savings]"));
        let r = one("D1/2/20\nT-10.00\nNEFT\nP\nLFood:Groceries").unwrap();
        assert_eq!((r.merchant, r.description.as_str()), (None, ""));
        assert_eq!(r.category.as_deref(), Some("Food:Groceries"));
    }

    #[test]
    fn splits_stay_one_row_and_warn_when_they_disagree() {
        // (record, warns)
        for (record, warns) in [
            ("T-10.00\nSA\n$-4.00\nSB\n$-6", false),
            ("T-10.00\nSA\n$-4.00\nSB\n$-5.99", true),
            ("T-10.00\nSA\n$-4.00\nSB\n$oops", true),
            ("T-10.00\nSA\nEno amount", false),
        ] {
            let p = parse(&format!("!Type:CCard\nD1/2/20\n{record}\n^\n")).unwrap();
            assert_eq!(p.rows.len(), 1, "{record}");
            assert_eq!(
                ok_rows(&p)[0].amount,
                Decimal {
                    units: -1000,
                    scale: 2
                }
            );
            assert_eq!(p.warnings.len(), usize::from(warns), "{record}");
        }
        let p = parse("!Type:Bank\nD1/2/20\nT-10.00\n$-4.00\n$-5.99\n^\n").unwrap();
        assert_eq!(p.warnings[0].row, Some(2));
        assert!(
            p.warnings[0].message.contains("-9.99"),
            "{}",
            p.warnings[0].message
        );
        assert!(
            p.warnings[0].message.contains("-10.00"),
            "{}",
            p.warnings[0].message
        );
    }

    #[test]
    fn sections_accounts_and_ignored_parts() {
        let text = "!Option:AutoSwitch\n!Account\nNSavings\nTBank\n^\nNVisa\nTCCard\n^\n!Clear:AutoSwitch\n\
            !Account\nNVisa\nTCCard\n^\n!Type:CCard\nD1/2/20\nT-5.00\n^\n\
            !Type:Cat\nNFood\nE\n^\n\
            !Account\nNBrokerage\nTInvst\n^\n!Type:Invst\nD1/3/20\nNBuy\nT100.00\n^\n\
            !Type:Cash\nD1/4/20\nT-1.00\n^\n\
            !Account\nNWallet\n^\n!type:cash \nD1/5/20\nT-2.00\n^\n";
        assert!(sniff(text));
        let p = parse(text).unwrap();
        let named = |n: &str| StatementInfo {
            account: Some(n.into()),
            currency: None,
        };
        // The Cash section without its own !Account continues the Visa statement.
        assert_eq!(p.statements, vec![named("Visa"), named("Wallet")]);
        let rows = ok_rows(&p);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.row, r.amount.units, r.statement))
            .collect();
        assert_eq!(got, vec![(15, -500, 0), (32, -100, 0), (39, -200, 1)]);
        let warned: Vec<_> = p.warnings.iter().map(|w| w.row).collect();
        assert_eq!(warned, vec![Some(1), Some(9), Some(18), Some(26)]);
        assert!(p.warnings[2].message.contains("!Type:Cat"));
        assert!(p.warnings[3].message.contains("!Type:Invst"));
    }

    #[test]
    fn files_without_type_header_are_format_errors() {
        for text in [
            "",
            "D1/2/20\nT1.00\n^\n",
            "!Account\nNX\nTBank\n^\n",
            ":20:X\n:61:200102C1,00NTRF\n",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        // Text before the header, CRLF lines, and a last record without ^.
        let p = parse("junk\r\n!Type:Bank\r\nD1/2/20\r\nT1.00\r\n").unwrap();
        assert_eq!(ok_rows(&p)[0].row, 3);
        let warned: Vec<_> = p.warnings.iter().map(|w| w.row).collect();
        assert_eq!(warned, vec![Some(1), Some(3)]);
    }

    #[test]
    fn sniffs_qif_heads() {
        for (head, want) in [
            ("!Type:Bank\nD1/2/20", true),
            ("\u{feff}\n\n  !Account\nNX", true),
            ("!Option:AutoSwitch\n", true),
            ("!type:ccard", true),
            ("D1/2/20\n!Type:Bank", false),
            (":20:X", false),
            ("", false),
        ] {
            assert_eq!(sniff(head), want, "{head:?}");
        }
    }
}
