//! SWIFT MT940 customer statements (our own reader; the `mt940` crate pulls clap into the
//! build). A file holds one or more messages (`:20:` … `:62F:`); headers and trailers between
//! them (`{1:…}{2:…}{4:`, `-}`, `-`, bank lines such as ABN AMRO's `ABNANL2A`) are skipped.
//!
//! - `:25:` gives the account (`BANK/ACCOUNT` keeps the account, a trailing currency is
//!   dropped), `:60F:`/`:60M:` the currency (else `:62F:`/`:62M:`/`:64:`/`:65:`).
//! - `:61:` is one row: `YYMMDD[MMDD]` value and entry dates (the entry date takes the year
//!   that puts it nearest the value date), `D`/`C`/`RD`/`RC`, an optional funds code, the
//!   amount with its decimal comma, the `N…`/`F…`/`S…` type, the customer reference and the
//!   bank reference after `//`.
//! - `:86:` right after a `:61:` is that row's text, read as the German `?20…?33` form, the
//!   Rabobank/ING `/NAME/…/REMI/…` form, or plain text. Its lines are joined without a
//!   separator where the bank wrapped a full line (60 characters or more) mid-word
//!   (`CONTRA ACCOUN` + `T HOLDER`), and with a space after a shorter line, which the bank
//!   ended on purpose; the German form's lines always without one.
//!
//! The row's `external_id` is the bank reference only (not the customer reference, see
//! [`parse`]).

use chrono::{Datelike, NaiveDate};

use super::{Decimal, FormatError, Parsed, ParsedRow, Rejected, StatementInfo, Warning};

/// Whether the start of a file looks like MT940: a line starting with `:20:` (possibly after
/// a `{4:` block opener) among its first 20 non-blank lines.
pub fn sniff(head: &str) -> bool {
    head.trim_start_matches('\u{feff}')
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .any(|l| {
            let l = l.find("{4:").map_or(l, |i| &l[i + 3..]);
            l.trim_start().starts_with(":20:")
        })
}

/// Parses a decoded MT940 file: one [`StatementInfo`] per message (`:20:`), in file order,
/// and one row per `:61:` line, whose `row` is the line of its `:61:` (1-based).
///
/// A `:61:` that cannot be read (no date, a date that does not exist, no debit/credit mark,
/// an amount without its decimal comma) is a [`Rejected`] row with field `date`, `mark` or
/// `amount`. Reversals (`RD` = reversal of a debit, money in; `RC`, money out) keep that
/// sign and add a [`Warning`]. `external_id` is the bank reference (after `//`) unless it is
/// `NONREF`; the customer reference is never used, because banks fill it with placeholders
/// shared by many rows (Rabobank's `EREF`, SNS's counterparty account), and a shared provider
/// id would make the ledger treat distinct rows as duplicates.
///
/// A text with neither a `:20:` nor a `:61:` field is a [`FormatError`].
pub fn parse(text: &str) -> Result<Parsed, FormatError> {
    let fields = fields(text);
    if !fields.iter().any(|f| f.tag == "20" || f.tag == "61") {
        return Err(FormatError(
            "not an MT940 statement: no :20: or :61: field".into(),
        ));
    }
    let mut out = Parsed::default();
    let mut stmts: Vec<Stmt> = Vec::new();
    let mut i = 0;
    while i < fields.len() {
        let f = &fields[i];
        let first = f.lines.first().copied().unwrap_or("");
        match f.tag {
            "20" => stmts.push(Stmt::default()),
            "25" => current(&mut stmts).account = Some(first.trim().to_string()),
            "60F" | "60M" => {
                let s = current(&mut stmts);
                if s.opening.is_none() {
                    s.opening = balance_currency(first);
                }
            }
            "62F" | "62M" | "64" | "65" => {
                let s = current(&mut stmts);
                if s.closing.is_none() {
                    s.closing = balance_currency(first);
                }
            }
            "61" => {
                current(&mut stmts);
                let statement = stmts.len() - 1;
                let info = fields.get(i + 1).filter(|n| n.tag == "86");
                if info.is_some() {
                    i += 1;
                }
                out.rows.push(row(f, info, statement, &mut out.warnings));
            }
            _ => {}
        }
        i += 1;
    }
    for s in stmts {
        let currency = s.opening.or(s.closing);
        let account = s.account.and_then(|a| account_id(&a, currency.as_deref()));
        out.statements.push(StatementInfo { account, currency });
    }
    for row in out.rows.iter_mut().flatten() {
        row.currency = out
            .statements
            .get(row.statement)
            .and_then(|s| s.currency.clone());
    }
    Ok(out)
}

/// One field: its tag (`61`, `60F`), the line of its tag (1-based) and its lines, the first
/// without the tag.
struct Field<'a> {
    tag: &'a str,
    line: u32,
    lines: Vec<&'a str>,
}

#[derive(Default)]
struct Stmt {
    account: Option<String>,
    opening: Option<String>,
    closing: Option<String>,
}

/// The statement being read, opened if a field comes before any `:20:`.
fn current(stmts: &mut Vec<Stmt>) -> &mut Stmt {
    if stmts.is_empty() {
        stmts.push(Stmt::default());
    }
    let last = stmts.len() - 1;
    &mut stmts[last]
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

/// Splits the file into fields, dropping what lies between messages.
fn fields(text: &str) -> Vec<Field<'_>> {
    let mut out: Vec<Field> = Vec::new();
    let mut open = false;
    for (n, raw) in lines(text.trim_start_matches('\u{feff}')) {
        let mut line = raw;
        if line.trim_start().starts_with('{') {
            // `{1:…}{2:…}{4:` opens a message; `{5:…}` and others are trailers.
            match line.find("{4:") {
                Some(i) => line = &line[i + 3..],
                None => {
                    open = false;
                    continue;
                }
            }
        }
        let trimmed = line.trim();
        if trimmed == "-" || trimmed.starts_with("-}") {
            open = false;
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        if let Some((tag, rest)) = split_tag(line) {
            out.push(Field {
                tag,
                line: n,
                lines: vec![rest],
            });
            open = true;
        } else if open && let Some(f) = out.last_mut() {
            f.lines.push(line);
        }
    }
    out
}

/// `:61:rest` → `("61", "rest")`: a colon, 2 or 3 digits, an optional capital, a colon.
fn split_tag(line: &str) -> Option<(&str, &str)> {
    let b = line.as_bytes();
    if b.first() != Some(&b':') {
        return None;
    }
    let mut i = 1;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if !(3..=4).contains(&i) {
        return None;
    }
    if b.get(i).is_some_and(u8::is_ascii_uppercase) {
        i += 1;
    }
    if b.get(i) != Some(&b':') {
        return None;
    }
    Some((&line[1..i], &line[i + 1..]))
}

/// The currency of a balance field, `C130101EUR000000001000,00` → `EUR`.
fn balance_currency(text: &str) -> Option<String> {
    let b = text.trim().as_bytes();
    let ok = b.len() >= 10
        && matches!(b[0], b'C' | b'D')
        && b[1..7].iter().all(u8::is_ascii_digit)
        && b[7..10].iter().all(u8::is_ascii_uppercase);
    ok.then(|| String::from_utf8_lossy(&b[7..10]).into_owned())
}

/// The account of a `:25:` field: the part after the last `/`, without a currency after it
/// (`NL69INGB0123456789EUR`, `… EUR`, `BANK/ACCOUNT/EUR`).
fn account_id(raw: &str, currency: Option<&str>) -> Option<String> {
    let is_code = |p: &str| p.len() == 3 && p.bytes().all(|c| c.is_ascii_uppercase());
    let mut parts: Vec<&str> = raw.split('/').map(str::trim).collect();
    // `BANK/ACCOUNT/CUR`, `ACCOUNT/`: the account is the last part that is not a currency.
    while parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty() || is_code(p)) {
        parts.pop();
    }
    let mut s = parts.last().copied().unwrap_or("");
    if let Some((head, tail)) = s.rsplit_once(char::is_whitespace)
        && is_code(tail)
    {
        s = head.trim_end();
    }
    if let Some(c) = currency
        && let Some(head) = s.strip_suffix(c)
        && head.ends_with(|c: char| c.is_ascii_digit())
    {
        s = head;
    }
    (!s.is_empty()).then(|| s.to_string())
}

/// A `:61:` field and its `:86:` as a row.
fn row(
    f: &Field,
    info: Option<&Field>,
    statement: usize,
    warnings: &mut Vec<Warning>,
) -> Result<ParsedRow, Rejected> {
    let line = parse_61(f.lines.first().copied().unwrap_or(""), f.line)?;
    let (merchant, description) = match info {
        Some(info) => information(&info.lines),
        // Without `:86:`, the supplementary details (the `:61:` continuation) are the text.
        None => (None, collapse(&f.lines.get(1..).unwrap_or(&[]).join(" "))),
    };
    if let Some(code) = line.reversal {
        let message = if code == "RD" {
            "a reversal of a debit (RD): read as money in"
        } else {
            "a reversal of a credit (RC): read as money out"
        };
        warnings.push(Warning {
            row: Some(f.line),
            message: message.into(),
        });
    }
    Ok(ParsedRow {
        row: f.line,
        date: line.entry.unwrap_or(line.value),
        value_date: Some(line.value),
        amount: line.amount,
        currency: None,
        merchant,
        description,
        external_id: line.bank_ref,
        category: None,
        statement,
    })
}

struct Line61 {
    value: NaiveDate,
    entry: Option<NaiveDate>,
    /// Signed: debits (and reversed credits) negative.
    amount: Decimal,
    reversal: Option<&'static str>,
    bank_ref: Option<String>,
}

/// The first line of a `:61:` field, `130101D000000000025,00N102EREF//BANKREF`.
fn parse_61(text: &str, row: u32) -> Result<Line61, Rejected> {
    let reject = |field: &str, reason: String| Rejected {
        row,
        field: field.into(),
        reason,
    };
    let s = text.trim();
    let b = s.as_bytes();
    let num = |from: usize| -> Option<u32> {
        let part = b.get(from..from + 2)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| u32::from(part[0] - b'0') * 10 + u32::from(part[1] - b'0'))
    };
    let (Some(yy), Some(mm), Some(dd)) = (num(0), num(2), num(4)) else {
        let start: String = s.chars().take(6).collect();
        return Err(reject(
            "date",
            format!("the value date must be YYMMDD, not {start:?}"),
        ));
    };
    let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
    let value = NaiveDate::from_ymd_opt(year as i32, mm, dd)
        .ok_or_else(|| reject("date", format!("the value date {} is not a date", &s[..6])))?;
    let mut pos = 6;
    let mut entry = None;
    if let (Some(em), Some(ed)) = (num(6), num(8)) {
        entry = Some(entry_date(value, em, ed).ok_or_else(|| {
            reject(
                "date",
                format!("the entry date {} is not a date", &s[6..10]),
            )
        })?);
        pos = 10;
    }
    let rest = &s[pos..];
    let (negative, reversal, len) = if rest.starts_with("RD") {
        (false, Some("RD"), 2)
    } else if rest.starts_with("RC") {
        (true, Some("RC"), 2)
    } else if rest.starts_with('D') {
        (true, None, 1)
    } else if rest.starts_with('C') {
        (false, None, 1)
    } else {
        return Err(reject(
            "mark",
            format!("no debit/credit mark (D, C, RD or RC) after the dates in {s:?}"),
        ));
    };
    pos += len;
    // The funds code: the third letter of a currency code, before the amount.
    if b.get(pos).is_some_and(u8::is_ascii_alphabetic) {
        pos += 1;
    }
    let start = pos;
    while b
        .get(pos)
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, b',' | b'.'))
    {
        pos += 1;
    }
    let amount_text = &s[start..pos];
    let amount = amount(amount_text).ok_or_else(|| {
        if amount_text.is_empty() {
            reject("amount", format!("no amount after the mark in {s:?}"))
        } else {
            reject(
                "amount",
                format!("unreadable amount {amount_text:?} (digits and one decimal comma)"),
            )
        }
    })?;
    let is_type = b.get(pos).is_some_and(|c| matches!(c, b'N' | b'F' | b'S'))
        && b.get(pos + 1..pos + 4)
            .is_some_and(|t| t.iter().all(u8::is_ascii_alphanumeric));
    if is_type {
        pos += 4;
    }
    let bank_ref = s
        .get(pos..)
        .and_then(|refs| refs.split_once("//"))
        .map(|(_, bank)| bank.trim())
        .filter(|r| !r.is_empty() && !r.eq_ignore_ascii_case("NONREF"))
        .map(str::to_string);
    Ok(Line61 {
        value,
        entry,
        amount: if negative { amount.neg() } else { amount },
        reversal,
        bank_ref,
    })
}

/// The entry date `MMDD` in the year that puts it nearest the value date (value 31 Dec,
/// entry 2 Jan → the next year; value 2 Jan, entry 31 Dec → the previous one).
fn entry_date(value: NaiveDate, month: u32, day: u32) -> Option<NaiveDate> {
    [value.year() - 1, value.year(), value.year() + 1]
        .into_iter()
        .filter_map(|y| NaiveDate::from_ymd_opt(y, month, day))
        .min_by_key(|d| (*d - value).num_days().abs())
}

/// An MT940 amount: digits and exactly one decimal comma (`1234,5`, `0,`, `25,00`); a
/// decimal point is accepted too.
fn amount(text: &str) -> Option<Decimal> {
    let (mut units, mut scale, mut digits) = (0i128, None::<u32>, 0);
    for c in text.bytes() {
        match c {
            b'0'..=b'9' => {
                units = units.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
                digits += 1;
                if let Some(s) = scale.as_mut() {
                    *s += 1;
                }
            }
            b',' | b'.' if scale.is_none() => scale = Some(0),
            _ => return None,
        }
    }
    if digits == 0 || digits > 30 {
        return None;
    }
    Some(Decimal {
        units,
        scale: scale?,
    })
}

/// Every run of whitespace made one space, trimmed.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A `:86:` line at least this long (in characters) was wrapped at the field's width, so
/// the next line continues it without a separator: banks wrap at 64 or 65, mid-word.
const FULL_LINE: usize = 60;

/// The merchant and description of a `:86:` field. The German form's lines are joined
/// without a separator (they break at its `?NN` codes or inside a fixed-width part). Other
/// lines are joined without a separator after a full line (`CONTRA ACCOUN` + `T HOLDER`),
/// with a space after a shorter one, which the bank ended on purpose (`…HOOFDLETTERS` +
/// `WANT DAT…`).
fn information(lines: &[&str]) -> (Option<String>, String) {
    let concat = lines.concat();
    if let Some(found) = german(concat.trim()) {
        return found;
    }
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 && lines[i - 1].chars().count() < FULL_LINE {
            text.push(' ');
        }
        text.push_str(line);
    }
    let text = text.trim();
    slashed(text).unwrap_or_else(|| (None, collapse(text)))
}

/// The German structured form `166?00GUTSCHRIFT?20purpose?21…?32name?33name` (Triodos
/// writes `>` for `?`).
fn german(text: &str) -> Option<(Option<String>, String)> {
    let b = text.as_bytes();
    let start = if b.first() == Some(&b'?') {
        0
    } else if b.len() > 3 && b[..3].iter().all(u8::is_ascii_digit) && matches!(b[3], b'?' | b'>') {
        3
    } else {
        return None;
    };
    if !b
        .get(start + 1..start + 3)
        .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let sep = char::from(b[start]);
    let mut parts: Vec<(u8, String)> = Vec::new();
    for piece in text[start + 1..].split(sep) {
        let code = piece
            .get(..2)
            .filter(|c| c.bytes().all(|d| d.is_ascii_digit()))
            .and_then(|c| c.parse::<u8>().ok());
        match (code, parts.last_mut()) {
            (Some(code), _) => parts.push((code, piece[2..].to_string())),
            // A separator inside the text itself.
            (None, Some(last)) => {
                last.1.push(sep);
                last.1.push_str(piece);
            }
            (None, None) => {}
        }
    }
    let pick = |wanted: &dyn Fn(u8) -> bool| -> String {
        parts
            .iter()
            .filter(|(c, _)| wanted(*c))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let purpose = pick(&|c| (20..=29).contains(&c) || (60..=63).contains(&c));
    let purpose = collapse(&sepa_purpose(&purpose).unwrap_or(purpose));
    let description = if purpose.is_empty() {
        collapse(&pick(&|c| c == 0))
    } else {
        purpose
    };
    Some((
        non_empty(collapse(&pick(&|c| c == 32 || c == 33))),
        description,
    ))
}

/// The SEPA purpose (`SVWZ+…`) among the keyed parts of a German purpose, up to the next key.
fn sepa_purpose(purpose: &str) -> Option<String> {
    const KEYS: [&str; 11] = [
        "EREF+", "KREF+", "MREF+", "CRED+", "DEBT+", "ABWA+", "ABWE+", "IBAN+", "BIC+", "COAM+",
        "OAMT+",
    ];
    let start = purpose.find("SVWZ+")? + 5;
    let rest = &purpose[start..];
    let end = KEYS
        .iter()
        .filter_map(|k| rest.find(k))
        .min()
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// The subfield codes of the Rabobank/ING/ABN AMRO `/KEY/value` form (longest first where
/// one is a prefix of another).
const SLASH_KEYS: [&str; 34] = [
    "CDTRREFTP",
    "CDTRREF",
    "EREF",
    "PREF",
    "MARF",
    "KREF",
    "CSID",
    "BENM",
    "ORDP",
    "NAME",
    "ADDR",
    "REMI",
    "ISDT",
    "RTRN",
    "TRTP",
    "IBAN",
    "BBAN",
    "BIC",
    "CNTP",
    "ULTC",
    "ULTD",
    "ULTB",
    "PURP",
    "SVCL",
    "ACCW",
    "BUSP",
    "OCMT",
    "EXCH",
    "CHGS",
    "FEES",
    "ISSR",
    "ID",
    "CD",
    "TP",
];

/// The `/EREF/…/BENM//NAME/…/REMI/…` form: merchant from `NAME` (that of `BENM`/`ORDP`
/// before that of an ultimate party) or the name in `CNTP`, description from `REMI`.
fn slashed(text: &str) -> Option<(Option<String>, String)> {
    if !text.starts_with('/') {
        return None;
    }
    // (key, where its leading slash is, where its value starts)
    let mut keys: Vec<(&str, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text.as_bytes()[i] == b'/' {
            let after = text.get(i + 1..).unwrap_or("");
            let key = SLASH_KEYS.iter().find(|k| {
                after.starts_with(**k) && after.get(k.len()..).is_some_and(|r| r.starts_with('/'))
            });
            if let Some(key) = key {
                keys.push((*key, i, i + key.len() + 2));
                i += key.len() + 2;
                continue;
            }
        }
        i += 1;
    }
    if keys.first().map(|k| k.1) != Some(0) {
        return None;
    }
    let (mut group, mut name, mut ultimate, mut remi) = ("", None, None, None);
    for (n, &(key, _, start)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map_or(text.len(), |next| next.1);
        let value = text.get(start..end).unwrap_or("");
        match key {
            "BENM" | "ORDP" | "ULTC" | "ULTD" | "ULTB" => group = key,
            "CNTP" => {
                // account/BIC/name/city
                group = key;
                if name.is_none() {
                    name = value.split('/').nth(2).map(collapse).and_then(non_empty);
                }
            }
            "NAME" => {
                let v = collapse(value.trim_matches('/'));
                if !v.is_empty() {
                    let slot = if group.starts_with("ULT") {
                        &mut ultimate
                    } else {
                        &mut name
                    };
                    slot.get_or_insert(v);
                }
            }
            "REMI" if remi.is_none() => remi = Some(remittance(value)),
            _ => {}
        }
    }
    Some((name.or(ultimate), remi.unwrap_or_default()))
}

/// A `REMI` value: ING's `USTD//text` and `STRD/CUR/reference` keep the text.
fn remittance(value: &str) -> String {
    let v = value.trim();
    let v = v
        .strip_prefix("USTD//")
        .or_else(|| v.strip_prefix("USTD/"))
        .unwrap_or(v);
    let v = match v.strip_prefix("STRD/") {
        Some(s) => s.split_once('/').map_or(s, |(_, r)| r),
        None => v,
    };
    collapse(v.trim_matches('/'))
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

    fn dec(units: i128, scale: u32) -> Decimal {
        Decimal { units, scale }
    }

    fn ok_rows(p: &Parsed) -> Vec<&ParsedRow> {
        p.rows.iter().map(|r| r.as_ref().expect("row")).collect()
    }

    /// One message with the given `:61:`/`:86:` lines (the `:61:` is on line 5).
    fn message(body: &str) -> String {
        format!(
            ":20:REF\n:25:DE89370400440532013000\n:28C:1/1\n:60F:C200101EUR100,00\n{body}\n:62F:C200102EUR100,00\n"
        )
    }

    #[test]
    fn rabobank_fixture_every_row() {
        let Some(text) = fixture("mt940_nl_rabobank.sta") else {
            return;
        };
        let p = parse(&text).unwrap();
        let st = StatementInfo {
            account: Some("NL71RABO0123456789".into()),
            currency: Some("EUR".into()),
        };
        assert_eq!(p.statements, vec![st.clone(), st]);
        assert_eq!(p.warnings, vec![]);
        let contra = Some("CONTRA ACCOUNT HOLDER");
        let john = Some("JOHN DOE");
        // (row, date, units, merchant, description, statement)
        let want = [
            (6, date(2013, 1, 1), -2500, contra, "", 0),
            (10, date(2013, 1, 2), -1000, john, "Reference 201301234", 0),
            (18, date(2013, 1, 8), -2500, contra, "", 1),
            (22, date(2013, 1, 9), -1000, john, "Reference 201301234", 1),
        ];
        let rows = ok_rows(&p);
        assert_eq!(rows.len(), want.len());
        for (r, (line, d, units, merchant, description, statement)) in rows.iter().zip(want) {
            let expected = ParsedRow {
                row: line,
                date: d,
                value_date: Some(d),
                amount: dec(units, 2),
                currency: Some("EUR".into()),
                merchant: merchant.map(str::to_string),
                description: description.into(),
                // EREF / NONREF are customer references, and there is no bank reference.
                external_id: None,
                category: None,
                statement,
            };
            assert_eq!(**r, expected);
        }
    }

    #[test]
    fn truncated_prefixes_never_panic() {
        let Some(text) = fixture("mt940_nl_rabobank.sta") else {
            return;
        };
        for end in (0..=text.len()).filter(|e| text.is_char_boundary(*e)) {
            let _ = parse(&text[..end]);
        }
        // A cut inside the first :61: amount rejects that row, it does not guess.
        let cut = text.find("025,00").unwrap() + 3;
        let p = parse(&text[..cut]).unwrap();
        assert_eq!(p.rows.len(), 1);
        let r = p.rows[0].as_ref().unwrap_err();
        assert_eq!((r.row, r.field.as_str()), (6, "amount"));
    }

    #[test]
    fn german_structured_form() {
        let text = message(
            ":61:2001020102DR1234,5NTRFNONREF//BANK-4711\n\
             :86:166?00SEPA-UEBERWEISUNG?100004?20EREF+E2E-1?21SVWZ+Rechnung 6789 vom 01.?22\n\
             01.2020 Danke?30GENODEF1XXX?31DE12500105170648489890?32Stadtwerke Musterst?33adt GmbH?34997",
        );
        let p = parse(&text).unwrap();
        let r = ok_rows(&p)[0];
        assert_eq!(r.row, 5);
        assert_eq!(r.amount, dec(-12345, 1));
        assert_eq!(r.merchant.as_deref(), Some("Stadtwerke Musterstadt GmbH"));
        assert_eq!(r.description, "Rechnung 6789 vom 01.01.2020 Danke");
        assert_eq!(r.external_id.as_deref(), Some("BANK-4711"));
        assert_eq!(
            p.statements[0].account.as_deref(),
            Some("DE89370400440532013000")
        );

        // Purpose without SEPA keys, split mid-word over ?20/?21; Triodos' `>` separator;
        // no purpose at all: the posting text (?00).
        for (info, merchant, description) in [
            (
                "?20Miete Janu?21ar 2020?32Hausverwaltung",
                Some("Hausverwaltung"),
                "Miete Januar 2020",
            ),
            (
                "000>100987654321\n>20ALGEMENE TUSSENREKENING KOS>21TEN VAN 01-10-2010 TOT EN M\n>22ET 31-12-2010>310390123456",
                None,
                "ALGEMENE TUSSENREKENING KOSTEN VAN 01-10-2010 TOT EN MET 31-12-2010",
            ),
            ("805?00ABSCHLUSS?109300", None, "ABSCHLUSS"),
            ("166?20Was? 20 Euro?32A", Some("A"), "Was? 20 Euro"),
            // Short German lines break before a code: never a space.
            (
                "166?00GUTSCHRIFT?20EREF+1\n?21SVWZ+Mie\nte Mai?32Name",
                Some("Name"),
                "Miete Mai",
            ),
            // Not the structured form: a separator other than `?`/`>`.
            ("100,00 EUR Miete", None, "100,00 EUR Miete"),
        ] {
            let p = parse(&message(&format!(":61:200102D1,00NMSCNONREF\n:86:{info}"))).unwrap();
            let r = ok_rows(&p)[0];
            assert_eq!(
                (r.merchant.as_deref(), r.description.as_str()),
                (merchant, description),
                "{info}"
            );
        }
    }

    #[test]
    fn entry_date_crosses_the_year_both_ways() {
        // (:61: dates, booking date, value date)
        for (dates, booked, value) in [
            ("1312310102", date(2014, 1, 2), date(2013, 12, 31)),
            ("1401021231", date(2013, 12, 31), date(2014, 1, 2)),
            ("1305100511", date(2013, 5, 11), date(2013, 5, 10)),
            ("130510", date(2013, 5, 10), date(2013, 5, 10)),
            ("1602290229", date(2016, 2, 29), date(2016, 2, 29)),
            ("9912311231", date(1999, 12, 31), date(1999, 12, 31)),
        ] {
            let p = parse(&message(&format!(":61:{dates}C1,00NTRFNONREF"))).unwrap();
            let r = ok_rows(&p)[0];
            assert_eq!((r.date, r.value_date), (booked, Some(value)), "{dates}");
        }
    }

    #[test]
    fn reversals_keep_their_sign_and_warn() {
        // (mark, sign of 25,00, warns)
        for (mark, units, warns) in [
            ("D", -2500, false),
            ("C", 2500, false),
            ("RD", 2500, true),
            ("RC", -2500, true),
            ("DR", -2500, false), // D with funds code R
            ("CE", 2500, false),
        ] {
            let p = parse(&message(&format!(":61:200102{mark}25,00NTRFNONREF"))).unwrap();
            assert_eq!(ok_rows(&p)[0].amount, dec(units, 2), "{mark}");
            assert_eq!(p.warnings.len(), usize::from(warns), "{mark}");
            if warns {
                assert_eq!(p.warnings[0].row, Some(5));
                assert!(p.warnings[0].message.contains(mark), "{mark}");
            }
        }
    }

    #[test]
    fn decimal_comma_amounts() {
        for (text, want) in [
            ("1234,5", Some(dec(12345, 1))),
            ("0,", Some(dec(0, 0))),
            ("0,00", Some(dec(0, 2))),
            ("000000000025,00", Some(dec(2500, 2))),
            ("107,", Some(dec(107, 0))),
            ("11,8", Some(dec(118, 1))),
            ("1.5", Some(dec(15, 1))),
            ("25", None),
            (",", None),
            ("1,2,3", None),
            ("", None),
            ("99999999999999999999999999999999,0", None),
        ] {
            assert_eq!(amount(text), want, "{text}");
        }
        let p = parse(&message(
            ":61:200102C1234,5NTRFNONREF\n:61:200102D0,NCHGNONREF",
        ))
        .unwrap();
        let rows = ok_rows(&p);
        assert_eq!((rows[0].amount, rows[1].amount), (dec(12345, 1), dec(0, 0)));
        assert_eq!(rows[1].row, 6);
    }

    #[test]
    fn malformed_61_lines_are_rejected_rows() {
        // (:61: content, field)
        for (line, field) in [
            ("2013D25,00NTRF", "date"),
            ("201332D25,00NTRF", "date"),
            ("2001021345D25,00NTRF", "date"),
            ("200102X25,00NTRF", "mark"),
            ("200102DN102NONREF", "amount"),
            ("200102D25NTRF", "amount"),
            ("200102D", "amount"),
            ("", "date"),
            ("€€€€€€€", "date"),
        ] {
            let p = parse(&message(&format!(":61:{line}\n:86:/NAME/X"))).unwrap();
            assert_eq!(p.rows.len(), 1, "{line}");
            let r = p.rows[0].as_ref().unwrap_err();
            assert_eq!(
                (r.row, r.field.as_str()),
                (5, field),
                "{line}: {}",
                r.reason
            );
        }
        // The rows after a rejected one still parse.
        let p = parse(&message(
            ":61:200199D1,00NTRF\n:86:x\n:61:200102D1,00NTRF\n:86:y",
        ))
        .unwrap();
        assert!(p.rows[0].is_err());
        assert_eq!(p.rows[1].as_ref().unwrap().description, "y");
    }

    #[test]
    fn files_without_mt940_structure_are_format_errors() {
        for text in [
            "",
            "Date,Amount\n2020-01-01,1.00\n",
            ":940:\n:25:NL71RABO0123456789\n",
            "!Type:Bank\nD1/1/20\nT1\n^\n",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn swift_envelopes_trailers_and_bank_headers_are_skipped() {
        let text = "{1:F01BANKBEBBAXXX0000000000}{2:I940BANKBEBBXXXXN}{4:\r\n\
            :20:A\r\n:25:BANKBEBB/123456789 EUR\r\n:28C:1\r\n:60F:C200101EUR1,00\r\n\
            :61:200102C1,00NTRFNONREF//B1\r\nsupplementary\r\n:62F:C200102EUR2,00\r\n\
            :86:statement-level information\r\n-}{5:{CHK:123}}\r\n\
            ABNANL2A\r\n940\r\nABNANL2A\r\n\
            :20:B\r\n:25:517852257\r\n:60M:D200102USD2,00\r\n\
            :61:200103D1,00NTRF//NONREF\r\n:86:BEA NR:XXX1234 23.05.11/09.08 DIGROS\r\n-\r\n";
        assert!(sniff(text));
        let p = parse(text).unwrap();
        assert_eq!(
            p.statements,
            vec![
                StatementInfo {
                    account: Some("123456789".into()),
                    currency: Some("EUR".into())
                },
                StatementInfo {
                    account: Some("517852257".into()),
                    currency: Some("USD".into())
                },
            ]
        );
        let rows = ok_rows(&p);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].row,
                rows[0].description.as_str(),
                rows[0].external_id.as_deref()
            ),
            (6, "supplementary", Some("B1"))
        );
        assert_eq!(
            (rows[0].statement, rows[0].currency.as_deref()),
            (0, Some("EUR"))
        );
        assert_eq!(
            (
                rows[1].row,
                rows[1].description.as_str(),
                rows[1].external_id.as_deref()
            ),
            (17, "BEA NR:XXX1234 23.05.11/09.08 DIGROS", None)
        );
        assert_eq!(
            (rows[1].statement, rows[1].currency.as_deref()),
            (1, Some("USD"))
        );
        assert_eq!(rows[1].merchant, None);
    }

    #[test]
    fn accounts_as_banks_write_them() {
        for (raw, currency, want) in [
            (
                "NL71RABO0123456789",
                Some("EUR"),
                Some("NL71RABO0123456789"),
            ),
            (
                "NL69INGB0123456789EUR",
                Some("EUR"),
                Some("NL69INGB0123456789"),
            ),
            ("NL69INGB0123456789 EUR", None, Some("NL69INGB0123456789")),
            ("10020030/1234567890", Some("EUR"), Some("1234567890")),
            ("TRIODOSBANK/0390123456", None, Some("0390123456")),
            ("1234567890/", None, Some("1234567890")),
            ("301775/00059707", Some("GBP"), Some("00059707")),
            (
                "UBRTHUHB/123456789150ABCDEF002/HUF",
                Some("HUF"),
                Some("123456789150ABCDEF002"),
            ),
            ("BANK/123 / ", None, Some("123")),
            ("  ", None, None),
        ] {
            assert_eq!(account_id(raw, currency).as_deref(), want, "{raw}");
        }
        // No :60F:: the closing balance gives the currency.
        let p = parse(":20:X\n:25:123\n:61:200102C1,00NTRF\n:62F:C200102CHF1,00\n").unwrap();
        assert_eq!(p.statements[0].currency.as_deref(), Some("CHF"));
        assert_eq!(ok_rows(&p)[0].currency.as_deref(), Some("CHF"));
        // A :61: without any :20: still gets a statement.
        let p = parse(":61:200102C1,00NTRF\n").unwrap();
        assert_eq!(p.statements, vec![StatementInfo::default()]);
        assert_eq!(ok_rows(&p)[0].statement, 0);
    }

    #[test]
    fn slash_subfields_and_wrapped_lines() {
        for (info, merchant, description) in [
            // Rabobank, wrapped mid-word.
            (
                "/EREF/01-01-2013 12:00 0030000987654321/BENM//NAME/CONTRA ACCOUN\nT HOLDER/REMI//ISDT/2013-07-11",
                Some("CONTRA ACCOUNT HOLDER"),
                "",
            ),
            (
                "/ORDP//NAME/Employer BV/ADDR/Street 1/REMI/Salary/ULTD//NAME/Other",
                Some("Employer BV"),
                "Salary",
            ),
            (
                "/ULTD//NAME/Only Ultimate/REMI/x",
                Some("Only Ultimate"),
                "x",
            ),
            // ING: counterparty in CNTP, REMI with USTD / STRD.
            (
                "/EREF/NOTPROVIDED//CNTP/NL59INGB0000000000/INGBNL2A/J DOE///REMI/USTD//Invoice 1/2/",
                Some("J DOE"),
                "Invoice 1/2",
            ),
            (
                "/CNTP/NL59INGB0000000000/INGBNL2A/ACME///REMI/STRD/CUR/1234567890123456/",
                Some("ACME"),
                "1234567890123456",
            ),
            (
                "/TRTP/SEPA OVERBOEKING/IBAN/NL12ABNA0123456789/BIC/ABNANL2A/NAME/Shop/REMI/Order 7/EREF/NOTPROVIDED",
                Some("Shop"),
                "Order 7",
            ),
            // Unstructured, padded to 65 characters (SNS), and text starting with a slash.
            (
                "0987654321 marechal s                                            \n\
                 dit is een test                                                  \n   ",
                None,
                "0987654321 marechal s dit is een test",
            ),
            ("/ just text", None, "/ just text"),
            // A short line ends on purpose: joined with a space; a full one is not.
            (
                "HIER EEN MOOIE OMSCHRIJVING IN HOOFDLETTERS\nWANT DAT IS ZO",
                None,
                "HIER EEN MOOIE OMSCHRIJVING IN HOOFDLETTERS WANT DAT IS ZO",
            ),
            (
                " RC AFREKENING BETALINGSVERKEER\nBETREFT REKENING 4715589\nING Bank N.V.",
                None,
                "RC AFREKENING BETALINGSVERKEER BETREFT REKENING 4715589 ING Bank N.V.",
            ),
            (
                "/EREF/E2E/REMI/A remittance text that is long enough to be wrapped by the ba\nnk at sixty-four/NAME/X",
                Some("X"),
                "A remittance text that is long enough to be wrapped by the bank at sixty-four",
            ),
        ] {
            let p = parse(&message(&format!(":61:200102D1,00NTRFNONREF\n:86:{info}"))).unwrap();
            let r = ok_rows(&p)[0];
            assert_eq!(
                (r.merchant.as_deref(), r.description.as_str()),
                (merchant, description),
                "{info}"
            );
        }
    }

    #[test]
    fn sniffs_mt940_heads() {
        for (head, want) in [
            (":20:940S130101\n:25:NL71RABO0123456789", true),
            (":940:\n:20:940S130101\n", true),
            ("{1:F01BANK}{2:I940BANKN}{4:\n:20:X\n", true),
            ("{1:F01BANK}{2:I940BANKN}{4::20:X\n", true),
            ("ABNANL2A\n940\nABNANL2A\n:20:ABN AMRO BANK NV\n", true),
            ("\u{feff}:20:X", true),
            ("!Type:Bank\nD1/1/20\n", false),
            ("Date,Amount\n", false),
            ("", false),
        ] {
            assert_eq!(sniff(head), want, "{head:?}");
        }
    }
}
