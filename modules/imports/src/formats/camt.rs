//! ISO 20022 camt.053 (BankToCustomerStatement), versions .001.02 to .001.08, with one
//! quick-xml serde model (INTEGRATIONS.md §1 "CAMT").
//!
//! quick-xml matches element and attribute keys by their **local name** (`QNameDeserializer`
//! uses `QName::local_name`, checked in the 0.36.2 source), so the `camt.053.001.0X`
//! namespace and any `ns2:` prefix do not matter. The model uses neither
//! `#[serde(flatten)]` nor untagged enums; the `overlapped-lists` feature lets repeated
//! elements (`Ntry`, `TxDtls`, `Ustrd`…) be collected even when something else stands
//! between them, as in files that do not follow the schema's order.
//!
//! Rules:
//! - One [`StatementInfo`] per `Stmt`: `Acct/Id/IBAN` (else `Acct/Id/Othr/Id`) and `Acct/Ccy`.
//! - Amount: `Amt` text parsed exactly (no `f64`; `JPY 2700` stays `2700`, scale 0), signed
//!   by `CdtDbtInd` (`DBIT` negative); currency `Amt/@Ccy`, else the statement's.
//! - Only `BOOK` entries are imported (`<Sts>BOOK</Sts>` in .02–.07,
//!   `<Sts><Cd>BOOK</Cd></Sts>` in .08); others are skipped with a warning.
//! - `RvslInd=true`: the sign `CdtDbtInd` gives is kept and the row is flagged.
//! - A batch entry (several `TxDtls`) is split into one row per detail only when every
//!   detail states an amount in the entry's currency and the signed parts add up exactly
//!   to the entry; otherwise it stays one row, with a warning.
//! - `row` is the 1-based ordinal of the row in the file: entries in file order, the parts
//!   of a split batch consecutively. A skipped (non-booked) or rejected entry takes an
//!   ordinal too, so that its warning or rejection names where it is.

use std::borrow::Cow;

use chrono::NaiveDate;
use quick_xml::Reader;
use quick_xml::events::Event;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Decimal, FormatError, Parsed, ParsedRow, Rejected, StatementInfo, Warning};

/// How many leading bytes [`sniff`] looks at.
const SNIFF_BYTES: usize = 2048;

/// The placeholder banks put where a reference is not given.
const NOT_PROVIDED: &str = "NOTPROVIDED";

/// Parses a decoded camt.053 file (any version from .001.02 to .001.08).
///
/// Not well-formed XML (a truncated download, a mismatched tag, an unknown entity) is a
/// [`FormatError`] that starts with "the XML is not well formed:", so that no file is
/// ever half imported; so is a document without `BkToCstmrStmt` (camt.052, camt.054, or
/// no CAMT at all).
pub fn parse(text: &str) -> Result<Parsed, FormatError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_well_formed(text)
        .map_err(|reason| FormatError(format!("the XML is not well formed: {reason}")))?;
    let doc: Document = quick_xml::de::from_str(text)
        .map_err(|e| FormatError(format!("the camt.053 document cannot be read: {e}")))?;
    let Some(message) = doc.statement_message else {
        let what = if doc.account_report.is_some() {
            "it is a camt.052 account report (BkToCstmrAcctRpt)"
        } else if doc.notification.is_some() {
            "it is a camt.054 debit/credit notification (BkToCstmrDbtCdtNtfctn)"
        } else {
            "the document has no BkToCstmrStmt element"
        };
        return Err(FormatError(format!(
            "not a camt.053 bank statement: {what}"
        )));
    };

    let mut out = Parsed::default();
    if message.statements.is_empty() {
        out.warnings.push(Warning {
            row: None,
            message: "the file holds no statement (Stmt)".into(),
        });
    }
    let mut next_row: u32 = 1;
    for (index, stmt) in message.statements.iter().enumerate() {
        let account = stmt.acct.as_ref();
        let id = account.and_then(|a| a.id.as_ref());
        let info = StatementInfo {
            account: clean(id.and_then(|i| i.iban.as_deref()))
                .or_else(|| clean(id.and_then(|i| i.othr.as_ref()?.id.as_deref()))),
            currency: clean(account.and_then(|a| a.ccy.as_deref())).map(|c| c.to_uppercase()),
        };
        let currency = info.currency.clone();
        out.statements.push(info);
        for entry in &stmt.entries {
            read_entry(entry, index, currency.as_deref(), &mut next_row, &mut out);
        }
    }
    Ok(out)
}

/// The `encoding="…"` label of the XML declaration at the start of `head` (after an
/// optional UTF-8 BOM and white space), as written: `Some("ISO-8859-1")`. `None` when
/// there is no declaration, it names no encoding, or it does not end within `head`.
pub fn declared_charset(head: &[u8]) -> Option<String> {
    let s = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let s = trim_ascii_start(s);
    let s = s.strip_prefix(b"<?xml")?;
    if !s.first()?.is_ascii_whitespace() {
        return None;
    }
    let decl = &s[..find(s, b"?>")?];
    let mut from = 0;
    while let Some(at) = find(&decl[from..], b"encoding").map(|p| p + from) {
        from = at + b"encoding".len();
        if at == 0 || !decl[at - 1].is_ascii_whitespace() {
            continue;
        }
        let Some(rest) = trim_ascii_start(&decl[from..]).strip_prefix(b"=") else {
            continue;
        };
        let (&quote, rest) = trim_ascii_start(rest).split_first()?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let label = &rest[..rest.iter().position(|&b| b == quote)?];
        let label = std::str::from_utf8(label).ok()?.trim();
        let valid = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        return valid.then(|| label.to_string());
    }
    None
}

/// Whether the start of a decoded file (the first 2 KiB are looked at) looks like
/// camt.053: markup that names `BkToCstmrStmt` or the `camt.053` namespace.
pub fn sniff(head: &str) -> bool {
    let mut end = head.len().min(SNIFF_BYTES);
    while !head.is_char_boundary(end) {
        end -= 1;
    }
    let head = &head[..end];
    let starts_with_markup = head
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<');
    starts_with_markup && (head.contains("BkToCstmrStmt") || head.contains("camt.053"))
}

// ---------------------------------------------------------------------------------------
// The serde model: only what the parser reads; everything else is ignored.

#[derive(Debug, Deserialize)]
struct Document {
    #[serde(rename = "BkToCstmrStmt", default)]
    statement_message: Option<StatementMessage>,
    #[serde(rename = "BkToCstmrAcctRpt", default)]
    account_report: Option<IgnoredAny>,
    #[serde(rename = "BkToCstmrDbtCdtNtfctn", default)]
    notification: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct StatementMessage {
    #[serde(rename = "Stmt", default)]
    statements: Vec<Statement>,
}

#[derive(Debug, Deserialize)]
struct Statement {
    #[serde(rename = "Acct", default)]
    acct: Option<Account>,
    #[serde(rename = "Ntry", default)]
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Account {
    #[serde(rename = "Id", default)]
    id: Option<AccountId>,
    #[serde(rename = "Ccy", default)]
    ccy: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AccountId {
    #[serde(rename = "IBAN", default)]
    iban: Option<String>,
    #[serde(rename = "Othr", default)]
    othr: Option<OtherId>,
}

#[derive(Debug, Deserialize)]
struct OtherId {
    #[serde(rename = "Id", default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "NtryRef", default)]
    ntry_ref: Option<String>,
    #[serde(rename = "Amt", default)]
    amt: Option<Amount>,
    #[serde(rename = "CdtDbtInd", default)]
    cdt_dbt_ind: Option<String>,
    #[serde(rename = "RvslInd", default)]
    rvsl_ind: Option<String>,
    #[serde(rename = "Sts", default)]
    sts: Option<Status>,
    #[serde(rename = "BookgDt", default)]
    bookg_dt: Option<DateChoice>,
    #[serde(rename = "ValDt", default)]
    val_dt: Option<DateChoice>,
    #[serde(rename = "AcctSvcrRef", default)]
    acct_svcr_ref: Option<String>,
    #[serde(rename = "NtryDtls", default)]
    ntry_dtls: Vec<EntryDetails>,
    #[serde(rename = "AddtlNtryInf", default)]
    addtl_ntry_inf: Option<String>,
}

/// `ActiveOrHistoricCurrencyAndAmount`: `<Amt Ccy="EUR">2.00</Amt>`.
#[derive(Debug, Deserialize)]
struct Amount {
    #[serde(rename = "@Ccy", default)]
    ccy: Option<String>,
    #[serde(rename = "$text", default)]
    value: Option<String>,
}

/// `<Sts>BOOK</Sts>` (.02–.07) or `<Sts><Cd>BOOK</Cd></Sts>` (.08, `EntryStatus1Choice`).
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(rename = "$text", default)]
    text: Option<String>,
    #[serde(rename = "Cd", default)]
    cd: Option<String>,
    #[serde(rename = "Prtry", default)]
    prtry: Option<String>,
}

/// `DateAndDateTimeChoice` (`BookgDt`, `ValDt`).
#[derive(Debug, Deserialize)]
struct DateChoice {
    #[serde(rename = "Dt", default)]
    dt: Option<String>,
    #[serde(rename = "DtTm", default)]
    dt_tm: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EntryDetails {
    #[serde(rename = "TxDtls", default)]
    tx_dtls: Vec<TxDetails>,
}

#[derive(Debug, Deserialize)]
struct TxDetails {
    #[serde(rename = "Refs", default)]
    refs: Option<References>,
    /// .04 and later.
    #[serde(rename = "Amt", default)]
    amt: Option<Amount>,
    #[serde(rename = "CdtDbtInd", default)]
    cdt_dbt_ind: Option<String>,
    #[serde(rename = "AmtDtls", default)]
    amt_dtls: Option<AmountDetails>,
    #[serde(rename = "RltdPties", default)]
    rltd_pties: Option<RelatedParties>,
    #[serde(rename = "RmtInf", default)]
    rmt_inf: Option<RemittanceInfo>,
    #[serde(rename = "AddtlTxInf", default)]
    addtl_tx_inf: Option<String>,
}

#[derive(Debug, Deserialize)]
struct References {
    #[serde(rename = "AcctSvcrRef", default)]
    acct_svcr_ref: Option<String>,
    #[serde(rename = "EndToEndId", default)]
    end_to_end_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AmountDetails {
    #[serde(rename = "TxAmt", default)]
    tx_amt: Option<AmountHolder>,
}

#[derive(Debug, Deserialize)]
struct AmountHolder {
    #[serde(rename = "Amt", default)]
    amt: Option<Amount>,
}

#[derive(Debug, Deserialize)]
struct RelatedParties {
    #[serde(rename = "Dbtr", default)]
    dbtr: Option<Party>,
    #[serde(rename = "Cdtr", default)]
    cdtr: Option<Party>,
}

/// `Dbtr`/`Cdtr`: the name is `Nm` in .02–.07 and `Pty/Nm` in .08.
#[derive(Debug, Deserialize)]
struct Party {
    #[serde(rename = "Nm", default)]
    nm: Option<String>,
    #[serde(rename = "Pty", default)]
    pty: Option<PartyName>,
}

#[derive(Debug, Deserialize)]
struct PartyName {
    #[serde(rename = "Nm", default)]
    nm: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RemittanceInfo {
    #[serde(rename = "Ustrd", default)]
    ustrd: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// From the model to rows.

/// Credit or debit, from the account holder's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Credit,
    Debit,
}

impl Side {
    fn parse(code: Option<&str>) -> Result<Side, String> {
        match code.map(str::trim) {
            Some(c) if c.eq_ignore_ascii_case("CRDT") => Ok(Side::Credit),
            Some(c) if c.eq_ignore_ascii_case("DBIT") => Ok(Side::Debit),
            Some(c) => Err(format!("CdtDbtInd is \"{c}\", not CRDT or DBIT")),
            None => Err("the entry has no credit/debit indicator (CdtDbtInd)".into()),
        }
    }

    fn sign(self, amount: Decimal) -> Decimal {
        match self {
            Side::Credit => amount,
            Side::Debit => amount.neg(),
        }
    }

    fn code(self) -> &'static str {
        match self {
            Side::Credit => "CRDT",
            Side::Debit => "DBIT",
        }
    }
}

/// What every row of one entry shares.
struct EntryCommon {
    date: NaiveDate,
    value_date: Option<NaiveDate>,
    statement: usize,
    reversal: bool,
}

/// A detail of a batch that can become its own row.
struct Part<'a> {
    detail: &'a TxDetails,
    amount: Decimal,
    side: Side,
}

fn read_entry(
    entry: &Entry,
    statement: usize,
    statement_currency: Option<&str>,
    next_row: &mut u32,
    out: &mut Parsed,
) {
    let first_row = *next_row;
    let reject = |out: &mut Parsed, next_row: &mut u32, field: &str, reason: String| {
        out.rows.push(Err(Rejected {
            row: first_row,
            field: field.into(),
            reason,
        }));
        *next_row = next_row.saturating_add(1);
    };

    // Only booked entries.
    let status = entry.sts.as_ref().and_then(|s| {
        clean(s.text.as_deref())
            .or_else(|| clean(s.cd.as_deref()))
            .or_else(|| clean(s.prtry.as_deref()))
    });
    if !status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("BOOK"))
    {
        let status = match status {
            Some(s) => format!("status {s}"),
            None => "no status (Sts)".into(),
        };
        out.warnings.push(Warning {
            row: Some(first_row),
            message: format!(
                "skipped the entry {} with {status}: only booked entries (BOOK) are imported",
                entry_label(entry)
            ),
        });
        *next_row = next_row.saturating_add(1);
        return;
    }

    let side = match Side::parse(entry.cdt_dbt_ind.as_deref()) {
        Ok(side) => side,
        Err(reason) => return reject(out, next_row, "amount", reason),
    };
    let Some(amt) = entry.amt.as_ref() else {
        return reject(
            out,
            next_row,
            "amount",
            "the entry has no amount (Amt)".into(),
        );
    };
    let amount = match parse_amount(amt.value.as_deref()) {
        Ok(a) => a,
        Err(reason) => return reject(out, next_row, "amount", reason),
    };
    let currency = match amount_currency(amt, statement_currency) {
        Ok(c) => c,
        Err(reason) => return reject(out, next_row, "currency", reason),
    };

    let value_date = match entry.val_dt.as_ref().map(|d| choice_date(d, "ValDt")) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(d))) => Some(d),
        Some(Err(reason)) => return reject(out, next_row, "value_date", reason),
    };
    let date = match entry.bookg_dt.as_ref().map(|d| choice_date(d, "BookgDt")) {
        Some(Ok(Some(d))) => d,
        Some(Err(reason)) => return reject(out, next_row, "date", reason),
        None | Some(Ok(None)) => match value_date {
            Some(d) => {
                out.warnings.push(Warning {
                    row: Some(first_row),
                    message: format!(
                        "the entry {} has no booking date (BookgDt): its value date is used",
                        entry_label(entry)
                    ),
                });
                d
            }
            None => {
                return reject(
                    out,
                    next_row,
                    "date",
                    "the entry has no booking date (BookgDt) nor value date (ValDt)".into(),
                );
            }
        },
    };

    let common = EntryCommon {
        date,
        value_date,
        statement,
        reversal: entry
            .rvsl_ind
            .as_deref()
            .map(str::trim)
            .is_some_and(|r| r.eq_ignore_ascii_case("true") || r == "1"),
    };
    let details: Vec<&TxDetails> = entry.ntry_dtls.iter().flat_map(|d| &d.tx_dtls).collect();
    let entry_ref =
        clean_ref(entry.acct_svcr_ref.as_deref()).or_else(|| clean_ref(entry.ntry_ref.as_deref()));

    let whole_row = |merchant, description, external_id| ParsedRow {
        row: first_row,
        date: common.date,
        value_date: common.value_date,
        amount: side.sign(amount),
        currency: currency.clone(),
        merchant,
        description,
        external_id,
        category: None,
        statement: common.statement,
    };

    let row = match details.as_slice() {
        [] => whole_row(
            None,
            clean(entry.addtl_ntry_inf.as_deref()).unwrap_or_default(),
            entry_ref,
        ),
        [detail] => whole_row(
            counterparty(detail, side),
            remittance(detail)
                .or_else(|| clean(entry.addtl_ntry_inf.as_deref()))
                .or_else(|| clean(detail.addtl_tx_inf.as_deref()))
                .unwrap_or_default(),
            entry_ref.or_else(|| detail_ref(detail)),
        ),
        several => match split(several, side.sign(amount), currency.as_deref(), side) {
            Ok(parts) => {
                push_parts(
                    &parts,
                    entry,
                    entry_ref,
                    currency.clone(),
                    &common,
                    next_row,
                    out,
                );
                return;
            }
            Err(why) => {
                out.warnings.push(Warning {
                    row: Some(first_row),
                    message: format!(
                        "the batch entry {} has {} transaction details but {why}: it is kept as one row",
                        entry_label(entry),
                        several.len()
                    ),
                });
                let mut names = several.iter().map(|d| counterparty(d, side));
                let first = names.next().flatten();
                let merchant = if names.all(|n| n == first) {
                    first
                } else {
                    None
                };
                let texts: Vec<String> = several.iter().filter_map(|d| remittance(d)).collect();
                let description = clean(entry.addtl_ntry_inf.as_deref())
                    .or_else(|| (!texts.is_empty()).then(|| texts.join(" ")))
                    .or_else(|| {
                        several
                            .iter()
                            .find_map(|d| clean(d.addtl_tx_inf.as_deref()))
                    })
                    .unwrap_or_default();
                whole_row(merchant, description, entry_ref)
            }
        },
    };
    if common.reversal {
        out.warnings.push(reversal_warning(first_row, side));
    }
    out.rows.push(Ok(row));
    *next_row = next_row.saturating_add(1);
}

/// The parts of a batch, when every detail states an amount in the entry's currency and
/// the signed parts add up exactly to the signed entry amount.
fn split<'a>(
    details: &[&'a TxDetails],
    entry_amount: Decimal,
    entry_currency: Option<&str>,
    entry_side: Side,
) -> Result<Vec<Part<'a>>, String> {
    let mut parts = Vec::with_capacity(details.len());
    for (i, detail) in details.iter().enumerate() {
        let n = i + 1;
        let Some(amt) = detail_amount(detail) else {
            return Err(format!("detail {n} states no amount"));
        };
        let amount = parse_amount(amt.value.as_deref())
            .map_err(|reason| format!("the amount of detail {n} cannot be read ({reason})"))?;
        let currency = amount_currency(amt, entry_currency)
            .map_err(|reason| format!("the currency of detail {n} cannot be read ({reason})"))?;
        if currency.as_deref() != entry_currency {
            return Err(format!(
                "detail {n} is in {}, the entry in {}",
                currency.as_deref().unwrap_or("no currency"),
                entry_currency.unwrap_or("no currency")
            ));
        }
        let side = match detail.cdt_dbt_ind.as_deref() {
            None => entry_side,
            Some(code) => {
                Side::parse(Some(code)).map_err(|reason| format!("detail {n}: {reason}"))?
            }
        };
        parts.push(Part {
            detail,
            amount,
            side,
        });
    }
    let signed: Vec<Decimal> = parts.iter().map(|p| p.side.sign(p.amount)).collect();
    match sum_equals(&signed, entry_amount) {
        Some(true) => Ok(parts),
        Some(false) => Err(format!(
            "their amounts add up to {}, not to the entry's {}",
            show(sum_display(&signed)),
            show(Some(entry_amount))
        )),
        None => Err("their amounts are too large to add up".into()),
    }
}

fn push_parts(
    parts: &[Part<'_>],
    entry: &Entry,
    entry_ref: Option<String>,
    currency: Option<String>,
    common: &EntryCommon,
    next_row: &mut u32,
    out: &mut Parsed,
) {
    for (i, part) in parts.iter().enumerate() {
        let row = *next_row;
        let base = entry_ref.clone().or_else(|| detail_ref(part.detail));
        out.rows.push(Ok(ParsedRow {
            row,
            date: common.date,
            value_date: common.value_date,
            amount: part.side.sign(part.amount),
            currency: currency.clone(),
            merchant: counterparty(part.detail, part.side),
            description: remittance(part.detail)
                .or_else(|| clean(part.detail.addtl_tx_inf.as_deref()))
                .or_else(|| clean(entry.addtl_ntry_inf.as_deref()))
                .unwrap_or_default(),
            external_id: base.map(|b| format!("{b}/{}", i + 1)),
            category: None,
            statement: common.statement,
        }));
        if common.reversal {
            out.warnings.push(reversal_warning(row, part.side));
        }
        *next_row = next_row.saturating_add(1);
    }
}

fn reversal_warning(row: u32, side: Side) -> Warning {
    Warning {
        row: Some(row),
        message: format!(
            "the entry is a reversal (RvslInd=true); its amount keeps the sign its \
             credit/debit indicator gives ({})",
            side.code()
        ),
    }
}

/// The detail's own amount: `TxDtls/Amt` (.04 and later), else `TxDtls/AmtDtls/TxAmt/Amt`.
fn detail_amount(detail: &TxDetails) -> Option<&Amount> {
    detail.amt.as_ref().or_else(|| {
        detail
            .amt_dtls
            .as_ref()
            .and_then(|a| a.tx_amt.as_ref())
            .and_then(|t| t.amt.as_ref())
    })
}

/// The creditor of a debit, the debtor of a credit.
fn counterparty(detail: &TxDetails, side: Side) -> Option<String> {
    let parties = detail.rltd_pties.as_ref()?;
    let party = match side {
        Side::Debit => parties.cdtr.as_ref(),
        Side::Credit => parties.dbtr.as_ref(),
    }?;
    clean(party.nm.as_deref()).or_else(|| clean(party.pty.as_ref()?.nm.as_deref()))
}

/// The unstructured remittance lines joined with a space.
fn remittance(detail: &TxDetails) -> Option<String> {
    let lines: Vec<&str> = detail
        .rmt_inf
        .as_ref()?
        .ustrd
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    (!lines.is_empty()).then(|| lines.join(" "))
}

/// `TxDtls/Refs/AcctSvcrRef`, else `TxDtls/Refs/EndToEndId`.
fn detail_ref(detail: &TxDetails) -> Option<String> {
    let refs = detail.refs.as_ref()?;
    clean_ref(refs.acct_svcr_ref.as_deref()).or_else(|| clean_ref(refs.end_to_end_id.as_deref()))
}

/// A reference, trimmed, unless empty or the `NOTPROVIDED` placeholder.
fn clean_ref(text: Option<&str>) -> Option<String> {
    clean(text).filter(|r| !r.eq_ignore_ascii_case(NOT_PROVIDED))
}

/// Text trimmed, `None` when empty.
fn clean(text: Option<&str>) -> Option<String> {
    let t = text?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// How a warning names an entry for a person: its reference, date and amount.
fn entry_label(entry: &Entry) -> String {
    let mut bits = Vec::new();
    if let Some(r) =
        clean(entry.acct_svcr_ref.as_deref()).or_else(|| clean(entry.ntry_ref.as_deref()))
    {
        bits.push(format!("ref {r}"));
    }
    if let Some(d) = entry
        .bookg_dt
        .as_ref()
        .and_then(|d| clean(d.dt.as_deref()).or_else(|| clean(d.dt_tm.as_deref())))
    {
        bits.push(d);
    }
    if let Some(amt) = &entry.amt {
        let mut money = String::new();
        if let Some(ind) = clean(entry.cdt_dbt_ind.as_deref()) {
            money.push_str(&ind);
            money.push(' ');
        }
        money.push_str(amt.value.as_deref().unwrap_or("").trim());
        if let Some(c) = clean(amt.ccy.as_deref()) {
            money.push(' ');
            money.push_str(&c);
        }
        bits.push(money);
    }
    if bits.is_empty() {
        String::new()
    } else {
        format!("({})", bits.join(", "))
    }
}

/// An `xs:decimal` amount as CAMT writes it (`2.00`, `474.4`, `2700`), exactly. CAMT
/// amounts are unsigned: `CdtDbtInd` gives the sign.
fn parse_amount(text: Option<&str>) -> Result<Decimal, String> {
    let raw = text.unwrap_or("").trim();
    if raw.is_empty() {
        return Err("the amount (Amt) is empty".into());
    }
    let body = raw.strip_prefix('+').unwrap_or(raw);
    if body.starts_with('-') {
        return Err(format!(
            "the amount \"{raw}\" is negative; CAMT amounts are unsigned and CdtDbtInd gives the sign"
        ));
    }
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let digits = int.len() + frac.len();
    if digits == 0 || !all_digits(int) || !all_digits(frac) {
        return Err(format!("the amount \"{raw}\" is not a decimal number"));
    }
    if digits > 30 {
        return Err(format!("the amount \"{raw}\" has too many digits"));
    }
    let mut units: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        units = units * 10 + i128::from(b - b'0');
    }
    let scale = u32::try_from(frac.len())
        .map_err(|_| format!("the amount \"{raw}\" has too many digits"))?;
    Ok(Decimal { units, scale })
}

/// `Amt/@Ccy` (upper-cased), else the statement's currency.
fn amount_currency(amt: &Amount, statement: Option<&str>) -> Result<Option<String>, String> {
    match clean(amt.ccy.as_deref()) {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(Some(c.to_ascii_uppercase()))
        }
        Some(c) => Err(format!("the currency \"{c}\" is not an ISO 4217 code")),
        None => Ok(statement.map(str::to_string)),
    }
}

/// The date of a `Dt` or `DtTm` (its date part, not shifted by any offset); `Ok(None)`
/// when the element is empty.
fn choice_date(choice: &DateChoice, element: &str) -> Result<Option<NaiveDate>, String> {
    let Some(text) = clean(choice.dt.as_deref()).or_else(|| clean(choice.dt_tm.as_deref())) else {
        return Ok(None);
    };
    text.get(..10)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(Some)
        .ok_or_else(|| format!("{element} \"{text}\" is not a date (YYYY-MM-DD)"))
}

/// Whether `parts` add up exactly to `total` (`None` on overflow).
fn sum_equals(parts: &[Decimal], total: Decimal) -> Option<bool> {
    let scale = parts.iter().map(|p| p.scale).chain([total.scale]).max()?;
    let mut sum: i128 = 0;
    for p in parts {
        sum = sum.checked_add(rescale(*p, scale)?)?;
    }
    Some(sum == rescale(total, scale)?)
}

fn sum_display(parts: &[Decimal]) -> Option<Decimal> {
    let scale = parts.iter().map(|p| p.scale).max()?;
    let mut units: i128 = 0;
    for p in parts {
        units = units.checked_add(rescale(*p, scale)?)?;
    }
    Some(Decimal { units, scale })
}

fn rescale(d: Decimal, scale: u32) -> Option<i128> {
    d.units
        .checked_mul(10i128.checked_pow(scale.checked_sub(d.scale)?)?)
}

/// A decimal for a message: `-6.00`.
fn show(d: Option<Decimal>) -> String {
    let Some(d) = d else {
        return "?".into();
    };
    let digits = d.units.unsigned_abs().to_string();
    let sign = if d.units < 0 { "-" } else { "" };
    let scale = d.scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

// ---------------------------------------------------------------------------------------
// Well-formedness.

/// Reads every event of the document, so that a truncated or broken file fails as a
/// whole before any row is read: tags must nest and close, entities must be known,
/// attributes well formed, and there must be exactly one root element.
fn check_well_formed(text: &str) -> Result<(), String> {
    let mut reader = Reader::from_str(text);
    let mut open: Vec<String> = Vec::new();
    let mut roots = 0usize;
    let at = |pos: u64| format!("line {}", line_of(text, pos));
    loop {
        let before = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} ({})", at(reader.error_position())))?;
        match event {
            Event::Start(start) => {
                if open.is_empty() {
                    roots += 1;
                }
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| format!("{e} ({})", at(before)))?;
                    attr.unescape_value()
                        .map_err(|e| format!("{e} ({})", at(before)))?;
                }
                open.push(String::from_utf8_lossy(start.name().as_ref()).into_owned());
            }
            Event::Empty(empty) => {
                if open.is_empty() {
                    roots += 1;
                }
                for attr in empty.attributes() {
                    let attr = attr.map_err(|e| format!("{e} ({})", at(before)))?;
                    attr.unescape_value()
                        .map_err(|e| format!("{e} ({})", at(before)))?;
                }
            }
            Event::End(_) => {
                // The reader checks that the name matches the open tag.
                open.pop();
            }
            Event::Text(t) => {
                let text: Cow<'_, str> =
                    t.unescape().map_err(|e| format!("{e} ({})", at(before)))?;
                if open.is_empty() && !text.trim().is_empty() {
                    return Err(format!("text outside the root element ({})", at(before)));
                }
            }
            Event::CData(_) => {
                if open.is_empty() {
                    return Err(format!("CDATA outside the root element ({})", at(before)));
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
        if roots > 1 {
            return Err(format!("more than one root element ({})", at(before)));
        }
    }
    if let Some(innermost) = open.last() {
        return Err(format!(
            "the file ends inside <{innermost}> ({}, {} element(s) left open): it looks truncated",
            at(text.len() as u64),
            open.len()
        ));
    }
    if roots == 0 {
        return Err("the file has no root element".into());
    }
    Ok(())
}

/// The 1-based line of a byte position.
fn line_of(text: &str, pos: u64) -> usize {
    let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim_ascii_start(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Option<String> {
        crate::formats::fixture_text(name)
    }

    /// `"-3.50"` → `Decimal { -350, 2 }`, written out by hand.
    fn dec(units: i128, scale: u32) -> Decimal {
        Decimal { units, scale }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

    struct Want {
        row: u32,
        date: &'static str,
        value_date: Option<&'static str>,
        amount: Decimal,
        currency: Option<&'static str>,
        merchant: Option<&'static str>,
        description: &'static str,
        external_id: Option<&'static str>,
        statement: usize,
    }

    impl Want {
        fn row(&self) -> ParsedRow {
            ParsedRow {
                row: self.row,
                date: day(self.date),
                value_date: self.value_date.map(day),
                amount: self.amount,
                currency: self.currency.map(String::from),
                merchant: self.merchant.map(String::from),
                description: self.description.into(),
                external_id: self.external_id.map(String::from),
                category: None,
                statement: self.statement,
            }
        }
    }

    fn stmt(account: Option<&str>, currency: Option<&str>) -> StatementInfo {
        StatementInfo {
            account: account.map(String::from),
            currency: currency.map(String::from),
        }
    }

    fn ok_rows(parsed: &Parsed) -> Vec<ParsedRow> {
        parsed
            .rows
            .iter()
            .map(|r| r.clone().expect("row accepted"))
            .collect()
    }

    fn check_fixture(name: &str, statements: Vec<StatementInfo>, want: &[Want]) {
        let Some(text) = fixture(name) else { return };
        let parsed = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.statements, statements, "{name}: statements");
        let rows = ok_rows(&parsed);
        assert_eq!(rows.len(), want.len(), "{name}: row count: {rows:#?}");
        for (got, want) in rows.iter().zip(want) {
            assert_eq!(got, &want.row(), "{name}: row {}", want.row);
        }
        assert_eq!(parsed.warnings, vec![], "{name}: warnings");
    }

    #[test]
    fn vr_bank_v02_with_a_batch_split_in_two() {
        let base = |row, amount, merchant, description, external_id| Want {
            row,
            date: "2013-12-27",
            value_date: Some("2013-12-27"),
            amount,
            currency: Some("EUR"),
            merchant: Some(merchant),
            description,
            external_id: Some(external_id),
            statement: 0,
        };
        check_fixture(
            "camt053_v02_de_vrbank.xml",
            vec![stmt(Some("DE14740618130000033626"), Some("EUR"))],
            &[
                // AcctSvcrRef wins over NtryRef; the Cdtr of a debit; Ustrd before AddtlNtryInf.
                base(
                    1,
                    dec(-200, 2),
                    "Testkonto Nummer 2",
                    "TEST BERWEISUNG MITTELS BLZUND KONTONUMMER - DTA",
                    "2013122710583450000",
                ),
                base(
                    2,
                    dec(-300, 2),
                    "Testkonto Nummer 2",
                    "Test+berweisung mit BIC und IBAN SEPA IBAN: DE58740618130100033626 BIC: GENODEF1PFK",
                    "2013122710583600000",
                ),
                // A credit: the Dbtr.
                base(
                    3,
                    dec(100, 2),
                    "Testkonto Nummer 2",
                    "R CKBUCHUNG",
                    "2013122711085260000",
                ),
                // The batch: 3.50 + 2.50 = 6.00, split with the detail index.
                base(
                    4,
                    dec(-350, 2),
                    "Testkonto Nummer 1",
                    "Sammelueberwseisung 2. Zahlung   TAN:283044",
                    "2013122711513230000/1",
                ),
                base(
                    5,
                    dec(-250, 2),
                    "Testkonto Nummer 1",
                    "Sammelueberweisung 1. Zahlung   TAN:283044",
                    "2013122711513230000/2",
                ),
            ],
        );
    }

    #[test]
    fn two_statements_of_one_message() {
        let account = Some("NL26VAYB8060476890");
        check_fixture(
            "camt053_v02_multi_statement.xml",
            vec![stmt(account, Some("EUR")), stmt(account, Some("EUR"))],
            &[
                // A credit that names only a Cdtr: no counterparty. No entry reference:
                // the detail's EndToEndId.
                Want {
                    row: 1,
                    date: "2014-12-31",
                    value_date: Some("2015-01-02"),
                    amount: dec(885, 2),
                    currency: Some("EUR"),
                    merchant: None,
                    description: "Transaction Description 1",
                    external_id: Some("000000001"),
                    statement: 0,
                },
                Want {
                    row: 2,
                    date: "2014-12-31",
                    value_date: Some("2015-01-02"),
                    amount: dec(-700, 2),
                    currency: Some("EUR"),
                    merchant: Some("Company Name 2"),
                    description: "Transaction Description 2",
                    external_id: Some("000000002"),
                    statement: 1,
                },
            ],
        );
    }

    #[test]
    fn v04_account_by_other_id_without_currency() {
        // Acct/Id/Othr/Id and no Acct/Ccy; the row's currency from Amt/@Ccy. The one
        // TxDtls says SEK 0: the entry amount is what was booked. Only a structured
        // reference (Strd): the description is empty.
        check_fixture(
            "camt053_v04_multicurrency.xml",
            vec![stmt(Some("NL26VAYB8060476890"), None)],
            &[Want {
                row: 1,
                date: "2014-12-31",
                value_date: Some("2015-01-02"),
                amount: dec(885, 2),
                currency: Some("EUR"),
                merchant: Some("NAME NAME"),
                description: "",
                external_id: Some("AAAASESS-FP-CN_98765/01"),
                statement: 0,
            }],
        );
    }

    #[test]
    fn v08_ubs_with_nested_status_and_party() {
        let base = |row, amount, currency, merchant, description, external_id| Want {
            row,
            date: "2023-06-20",
            value_date: Some("2023-06-20"),
            amount,
            currency: Some(currency),
            merchant: Some(merchant),
            description,
            external_id: Some(external_id),
            statement: 0,
        };
        check_fixture(
            "camt053_v08_ch_ubs.xml",
            vec![stmt(Some("CH1111111111111111111"), Some("CHF"))],
            &[
                // 474.4 as written: one decimal.
                base(
                    1,
                    dec(4744, 1),
                    "CHF",
                    "Jon Doe",
                    "INVOICE R77561",
                    "9999171ZC0173078",
                ),
                // No Ustrd: AddtlNtryInf. A batch of one: not split, no index.
                base(
                    2,
                    dec(8885, 2),
                    "CHF",
                    "Finanz AG",
                    "Credit Creditor Reference",
                    "2022172PH0003127",
                ),
                // A EUR debit on a CHF account: the row's own currency.
                base(
                    3,
                    dec(-2097, 2),
                    "EUR",
                    "DHL Express (Schweiz) AG",
                    "e-banking Order // FILETRANSFER",
                    "0124571DN6195349",
                ),
            ],
        );
    }

    #[test]
    fn truncated_fixture_is_refused_whole() {
        let Some(text) = fixture("bad_truncated_camt053.xml") else {
            return;
        };
        let err = parse(&text).expect_err("truncated");
        assert!(err.0.starts_with("the XML is not well formed: "), "{err}");
        assert!(err.0.contains("truncated"), "{err}");
        assert!(err.0.contains("<Dbtr>"), "{err}");
    }

    #[test]
    fn no_prefix_of_a_fixture_panics_or_gives_half_the_rows() {
        for name in [
            "camt053_v02_de_vrbank.xml",
            "camt053_v02_multi_statement.xml",
            "camt053_v04_multicurrency.xml",
            "camt053_v08_ch_ubs.xml",
            "bad_truncated_camt053.xml",
        ] {
            let Some(text) = fixture(name) else { return };
            let complete = text.trim_end().len();
            let mut cut = 0;
            while cut < text.len() {
                if text.is_char_boundary(cut) {
                    let prefix = &text[..cut];
                    let result = parse(prefix);
                    if cut < complete {
                        assert!(result.is_err(), "{name}: prefix of {cut} bytes parsed");
                    }
                }
                cut += 3;
            }
        }
    }

    // ---- crafted inputs ---------------------------------------------------------------

    /// A .02-style document with one EUR statement holding `entries`.
    fn doc(entries: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
<GrpHdr><MsgId>1</MsgId></GrpHdr>
<Stmt><Id>S1</Id><Acct><Id><IBAN>DE00123</IBAN></Id><Ccy>EUR</Ccy></Acct>
{entries}
</Stmt></BkToCstmrStmt></Document>"#
        )
    }

    /// A booked entry with `amount` (`<Amt …>` included), `ind`, and `rest` (references,
    /// details…).
    fn ntry(amount: &str, ind: &str, rest: &str) -> String {
        format!(
            "<Ntry>{amount}<CdtDbtInd>{ind}</CdtDbtInd><Sts>BOOK</Sts>\
             <BookgDt><Dt>2024-01-02</Dt></BookgDt>{rest}</Ntry>"
        )
    }

    fn parse_ok(text: &str) -> Parsed {
        parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn prefixes_and_version_namespaces_do_not_matter() {
        let text = r#"<?xml version="1.0"?>
<ns2:Document xmlns:ns2="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
 <ns2:BkToCstmrStmt><ns2:Stmt>
  <ns2:Acct><ns2:Id><ns2:IBAN>CH93</ns2:IBAN></ns2:Id><ns2:Ccy>CHF</ns2:Ccy></ns2:Acct>
  <ns2:Ntry><ns2:Amt Ccy="CHF">1.5</ns2:Amt><ns2:CdtDbtInd>DBIT</ns2:CdtDbtInd>
   <ns2:Sts><ns2:Cd>BOOK</ns2:Cd></ns2:Sts>
   <ns2:BookgDt><ns2:DtTm>2024-03-31T23:30:00-05:00</ns2:DtTm></ns2:BookgDt>
   <ns2:NtryDtls><ns2:TxDtls><ns2:RltdPties><ns2:Cdtr><ns2:Pty><ns2:Nm>Migros</ns2:Nm></ns2:Pty></ns2:Cdtr></ns2:RltdPties></ns2:TxDtls></ns2:NtryDtls>
  </ns2:Ntry>
 </ns2:Stmt></ns2:BkToCstmrStmt>
</ns2:Document>"#;
        let parsed = parse_ok(text);
        assert_eq!(parsed.statements, vec![stmt(Some("CH93"), Some("CHF"))]);
        let rows = ok_rows(&parsed);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].amount, dec(-15, 1));
        // The date part of a DtTm, not shifted by its offset.
        assert_eq!(rows[0].date, day("2024-03-31"));
        assert_eq!(rows[0].value_date, None);
        assert_eq!(rows[0].merchant.as_deref(), Some("Migros"));
        assert_eq!(rows[0].external_id, None);
    }

    #[test]
    fn only_booked_entries_are_imported() {
        // (Sts element, imported?)
        let cases = [
            ("<Sts>BOOK</Sts>", true),
            ("<Sts> BOOK </Sts>", true),
            ("<Sts>\n  <Cd>BOOK</Cd>\n</Sts>", true),
            ("<Sts><Prtry>BOOK</Prtry></Sts>", true),
            ("<Sts>PDNG</Sts>", false),
            ("<Sts><Cd>PDNG</Cd></Sts>", false),
            ("<Sts><Cd>INFO</Cd></Sts>", false),
            ("<Sts/>", false),
            ("", false),
        ];
        for (sts, booked) in cases {
            let entries = format!(
                "<Ntry><Amt Ccy=\"EUR\">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>{sts}\
                 <BookgDt><Dt>2024-01-02</Dt></BookgDt><AcctSvcrRef>R1</AcctSvcrRef></Ntry>{}",
                ntry(
                    "<Amt Ccy=\"EUR\">2.00</Amt>",
                    "DBIT",
                    "<AcctSvcrRef>R2</AcctSvcrRef>"
                )
            );
            let parsed = parse_ok(&doc(&entries));
            let rows = ok_rows(&parsed);
            if booked {
                assert_eq!(rows.len(), 2, "{sts}");
                assert_eq!(rows[0].row, 1);
                assert_eq!(parsed.warnings, vec![], "{sts}");
            } else {
                assert_eq!(rows.len(), 1, "{sts}");
                assert_eq!(parsed.warnings.len(), 1, "{sts}");
                let w = &parsed.warnings[0];
                assert_eq!(w.row, Some(1), "{sts}");
                assert!(
                    w.message
                        .contains("skipped the entry (ref R1, 2024-01-02, CRDT 1.00 EUR)"),
                    "{}",
                    w.message
                );
                assert!(
                    w.message.contains("only booked entries (BOOK)"),
                    "{}",
                    w.message
                );
            }
            // The next entry keeps its place in the file.
            assert_eq!(rows.last().map(|r| r.row), Some(2), "{sts}");
            assert_eq!(
                rows.last().and_then(|r| r.external_id.clone()).as_deref(),
                Some("R2")
            );
        }
        let parsed = parse_ok(&doc(
            "<Ntry><Amt Ccy=\"EUR\">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>PDNG</Sts></Ntry>",
        ));
        assert!(parsed.warnings[0].message.contains("with status PDNG"));
    }

    #[test]
    fn amounts_are_exact_and_signed_by_the_indicator() {
        // (Amt, CdtDbtInd, amount, currency)
        let cases = [
            (r#"<Amt Ccy="JPY">2700</Amt>"#, "DBIT", dec(-2700, 0), "JPY"),
            (r#"<Amt Ccy="JPY">2700</Amt>"#, "CRDT", dec(2700, 0), "JPY"),
            (r#"<Amt Ccy="EUR">0.10</Amt>"#, "DBIT", dec(-10, 2), "EUR"),
            (r#"<Amt Ccy="BHD">1.234</Amt>"#, "CRDT", dec(1234, 3), "BHD"),
            (
                r#"<Amt Ccy="EUR">123456789012.99</Amt>"#,
                "DBIT",
                dec(-12345678901299, 2),
                "EUR",
            ),
            (r#"<Amt Ccy="usd"> 5. </Amt>"#, "CRDT", dec(5, 0), "USD"),
            (r#"<Amt Ccy="EUR">.5</Amt>"#, "CRDT", dec(5, 1), "EUR"),
            (r#"<Amt Ccy="EUR">+7</Amt>"#, "CRDT", dec(7, 0), "EUR"),
            // No Ccy: the statement's.
            (r#"<Amt>3.00</Amt>"#, "dbit", dec(-300, 2), "EUR"),
        ];
        for (amt, ind, amount, currency) in cases {
            let parsed = parse_ok(&doc(&ntry(amt, ind, "")));
            let rows = ok_rows(&parsed);
            assert_eq!(rows[0].amount, amount, "{amt}");
            assert_eq!(rows[0].currency.as_deref(), Some(currency), "{amt}");
        }
    }

    #[test]
    fn unreadable_entries_are_rejected_and_the_others_kept() {
        // (entry, field, words of the reason)
        let cases = [
            (ntry(r#"<Amt Ccy="EUR">1,50</Amt>"#, "DBIT", ""), "amount", "not a decimal number"),
            (ntry(r#"<Amt Ccy="EUR">-1.50</Amt>"#, "DBIT", ""), "amount", "negative"),
            (ntry(r#"<Amt Ccy="EUR"></Amt>"#, "DBIT", ""), "amount", "empty"),
            (ntry(r#"<Amt Ccy="EUR">1.2.3</Amt>"#, "DBIT", ""), "amount", "not a decimal"),
            (ntry(r#"<Amt Ccy="EUR">1e5</Amt>"#, "DBIT", ""), "amount", "not a decimal"),
            (ntry(r#"<Amt Ccy="EUR">1234567890123456789012345678901</Amt>"#, "DBIT", ""), "amount", "too many digits"),
            (ntry("", "DBIT", ""), "amount", "no amount"),
            (ntry(r#"<Amt Ccy="EUR">1.00</Amt>"#, "BOTH", ""), "amount", "CdtDbtInd is \"BOTH\""),
            (ntry(r#"<Amt Ccy="EURO">1.00</Amt>"#, "DBIT", ""), "currency", "ISO 4217"),
            (
                "<Ntry><Amt Ccy=\"EUR\">1.00</Amt><Sts>BOOK</Sts><BookgDt><Dt>2024-01-02</Dt></BookgDt></Ntry>".into(),
                "amount",
                "no credit/debit indicator",
            ),
            (
                "<Ntry><Amt Ccy=\"EUR\">1.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>\
                 <BookgDt><Dt>02.01.2024</Dt></BookgDt></Ntry>".into(),
                "date",
                "BookgDt \"02.01.2024\" is not a date",
            ),
            (
                "<Ntry><Amt Ccy=\"EUR\">1.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>\
                 <BookgDt><Dt>2024-02-30</Dt></BookgDt></Ntry>".into(),
                "date",
                "not a date",
            ),
            (
                "<Ntry><Amt Ccy=\"EUR\">1.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts></Ntry>".into(),
                "date",
                "no booking date",
            ),
            (
                ntry(r#"<Amt Ccy="EUR">1.00</Amt>"#, "DBIT", "<ValDt><Dt>soon</Dt></ValDt>"),
                "value_date",
                "ValDt \"soon\"",
            ),
        ];
        for (entry, field, reason) in cases {
            let entries = format!(
                "{entry}{}",
                ntry(r#"<Amt Ccy="EUR">9.99</Amt>"#, "CRDT", "")
            );
            let parsed = parse_ok(&doc(&entries));
            assert_eq!(parsed.rows.len(), 2, "{entry}");
            let Err(rejected) = &parsed.rows[0] else {
                panic!("accepted: {entry}")
            };
            assert_eq!(rejected.row, 1);
            assert_eq!(rejected.field, field, "{entry}");
            assert!(
                rejected.reason.contains(reason),
                "{entry}: {}",
                rejected.reason
            );
            let Ok(next) = &parsed.rows[1] else {
                panic!("second row")
            };
            assert_eq!((next.row, next.amount), (2, dec(999, 2)));
        }
    }

    #[test]
    fn dates_from_dt_or_dttm_and_the_value_date_when_booking_date_is_missing() {
        let entry = "<Ntry><Amt Ccy=\"EUR\">1.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>\
                     <ValDt><DtTm>2024-05-06T08:00:00.000+02:00</DtTm></ValDt></Ntry>";
        let parsed = parse_ok(&doc(entry));
        let rows = ok_rows(&parsed);
        assert_eq!(rows[0].date, day("2024-05-06"));
        assert_eq!(rows[0].value_date, Some(day("2024-05-06")));
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].row, Some(1));
        assert!(
            parsed.warnings[0]
                .message
                .contains("no booking date (BookgDt)")
        );

        let entry = ntry(
            r#"<Amt Ccy="EUR">1.00</Amt>"#,
            "DBIT",
            "<ValDt><Dt>2024-01-05+01:00</Dt></ValDt>",
        );
        let rows = ok_rows(&parse_ok(&doc(&entry)));
        assert_eq!(
            (rows[0].date, rows[0].value_date),
            (day("2024-01-02"), Some(day("2024-01-05")))
        );
    }

    #[test]
    fn a_reversal_keeps_the_indicated_sign_and_is_flagged() {
        for (rvsl, ind, amount, flagged) in [
            ("<RvslInd>true</RvslInd>", "CRDT", dec(1250, 2), true),
            ("<RvslInd>1</RvslInd>", "DBIT", dec(-1250, 2), true),
            ("<RvslInd>false</RvslInd>", "CRDT", dec(1250, 2), false),
            ("", "CRDT", dec(1250, 2), false),
        ] {
            let entry = format!(
                "<Ntry><Amt Ccy=\"EUR\">12.50</Amt><CdtDbtInd>{ind}</CdtDbtInd>{rvsl}<Sts>BOOK</Sts>\
                 <BookgDt><Dt>2024-01-02</Dt></BookgDt></Ntry>"
            );
            let parsed = parse_ok(&doc(&entry));
            assert_eq!(ok_rows(&parsed)[0].amount, amount, "{rvsl}");
            if flagged {
                assert_eq!(parsed.warnings.len(), 1, "{rvsl}");
                assert_eq!(parsed.warnings[0].row, Some(1));
                assert!(
                    parsed.warnings[0]
                        .message
                        .contains("reversal (RvslInd=true)")
                );
                assert!(parsed.warnings[0].message.contains(ind));
            } else {
                assert_eq!(parsed.warnings, vec![], "{rvsl}");
            }
        }
    }

    /// A detail: `amt` is the whole amount markup (`<Amt …>` or `<AmtDtls>…`), `rest` the
    /// other children.
    fn tx(refs: &str, amt: &str, rest: &str) -> String {
        format!("<TxDtls>{refs}{amt}{rest}</TxDtls>")
    }

    fn tx_amt(value: &str) -> String {
        format!(r#"<AmtDtls><TxAmt><Amt Ccy="EUR">{value}</Amt></TxAmt></AmtDtls>"#)
    }

    #[test]
    fn batches_split_only_when_the_parts_add_up() {
        let cdtr = |name: &str, text: &str| {
            format!(
                "<RltdPties><Cdtr><Nm>{name}</Nm></Cdtr></RltdPties><RmtInf><Ustrd>{text}</Ustrd></RmtInf>"
            )
        };
        let batch = |details: String| {
            ntry(
                r#"<Amt Ccy="EUR">10.00</Amt>"#,
                "DBIT",
                &format!(
                    "<AcctSvcrRef>B1</AcctSvcrRef><NtryDtls><Btch><NbOfTxs>2</NbOfTxs></Btch>{details}</NtryDtls>\
                     <AddtlNtryInf>SAMMEL</AddtlNtryInf>"
                ),
            )
        };
        // (details, split amounts or None, words of the warning)
        let cases: Vec<(String, Option<Vec<Decimal>>, &str)> = vec![
            // .02 style AmtDtls/TxAmt, different scales.
            (
                tx("", &tx_amt("6.5"), &cdtr("A", "one"))
                    + &tx("", &tx_amt("3.50"), &cdtr("B", "two")),
                Some(vec![dec(-65, 1), dec(-350, 2)]),
                "",
            ),
            // .04+ style TxDtls/Amt, preferred over AmtDtls.
            (
                tx(
                    "",
                    r#"<Amt Ccy="EUR">4.00</Amt>"#,
                    &(tx_amt("99.00") + &cdtr("A", "one")),
                ) + &tx("", r#"<Amt Ccy="EUR">6.00</Amt>"#, &cdtr("B", "two")),
                Some(vec![dec(-400, 2), dec(-600, 2)]),
                "",
            ),
            // A part with its own (opposite) indicator: -12 + 2 = -10.
            (
                tx(
                    "",
                    r#"<Amt Ccy="EUR">12.00</Amt><CdtDbtInd>DBIT</CdtDbtInd>"#,
                    &cdtr("A", "one"),
                ) + &tx(
                    "",
                    r#"<Amt Ccy="EUR">2.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>"#,
                    &cdtr("B", "two"),
                ),
                Some(vec![dec(-1200, 2), dec(200, 2)]),
                "",
            ),
            (
                tx("", &tx_amt("6.00"), &cdtr("A", "one"))
                    + &tx("", &tx_amt("3.00"), &cdtr("B", "two")),
                None,
                "add up to -9.00, not to the entry's -10.00",
            ),
            (
                tx("", &tx_amt("6.00"), &cdtr("A", "one")) + &tx("", "", &cdtr("B", "two")),
                None,
                "detail 2 states no amount",
            ),
            (
                tx("", &tx_amt("6.00"), &cdtr("A", "one"))
                    + &tx("", r#"<Amt Ccy="USD">4.00</Amt>"#, &cdtr("B", "two")),
                None,
                "detail 2 is in USD, the entry in EUR",
            ),
            (
                tx("", &tx_amt("6,00"), &cdtr("A", "one"))
                    + &tx("", &tx_amt("4.00"), &cdtr("B", "two")),
                None,
                "the amount of detail 1 cannot be read",
            ),
        ];
        for (details, split, warning) in cases {
            let parsed = parse_ok(&doc(
                &(batch(details.clone()) + &ntry(r#"<Amt Ccy="EUR">1.00</Amt>"#, "CRDT", ""))
            ));
            let rows = ok_rows(&parsed);
            match split {
                Some(amounts) => {
                    assert_eq!(parsed.warnings, vec![], "{details}");
                    assert_eq!(rows.len(), 3, "{details}");
                    let got: Vec<_> = rows[..2].iter().map(|r| r.amount).collect();
                    assert_eq!(got, amounts, "{details}");
                    let ids: Vec<_> = rows.iter().map(|r| r.external_id.as_deref()).collect();
                    assert_eq!(ids, vec![Some("B1/1"), Some("B1/2"), None]);
                    let rows_n: Vec<_> = rows.iter().map(|r| r.row).collect();
                    assert_eq!(rows_n, vec![1, 2, 3]);
                    assert_eq!(rows[0].description, "one");
                    assert_eq!(rows[1].description, "two");
                    assert_eq!(rows[0].merchant.as_deref(), Some("A"));
                    // A credit part's counterparty is its Dbtr: none here.
                    let second = if amounts[1].is_negative() {
                        Some("B")
                    } else {
                        None
                    };
                    assert_eq!(rows[1].merchant.as_deref(), second);
                }
                None => {
                    assert_eq!(rows.len(), 2, "{details}");
                    let row = &rows[0];
                    assert_eq!((row.row, row.amount), (1, dec(-1000, 2)));
                    assert_eq!(row.external_id.as_deref(), Some("B1"));
                    assert_eq!(row.merchant, None, "two different creditors");
                    assert_eq!(row.description, "SAMMEL");
                    assert_eq!(rows[1].row, 2);
                    assert_eq!(parsed.warnings.len(), 1, "{details}");
                    let w = &parsed.warnings[0];
                    assert_eq!(w.row, Some(1));
                    assert!(w.message.contains(warning), "{}", w.message);
                    assert!(w.message.contains("kept as one row"), "{}", w.message);
                }
            }
        }
    }

    #[test]
    fn an_unsplit_batch_without_entry_text_joins_the_details() {
        let details = tx(
            "",
            "",
            "<RltdPties><Cdtr><Nm>Same</Nm></Cdtr></RltdPties><RmtInf><Ustrd>a</Ustrd></RmtInf>",
        ) + &tx(
            "",
            "",
            "<RltdPties><Cdtr><Nm>Same</Nm></Cdtr></RltdPties><RmtInf><Ustrd>b</Ustrd></RmtInf>",
        );
        let entry = ntry(
            r#"<Amt Ccy="EUR">5.00</Amt>"#,
            "DBIT",
            &format!("<NtryDtls>{details}</NtryDtls>"),
        );
        let parsed = parse_ok(&doc(&entry));
        let rows = ok_rows(&parsed);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].merchant.as_deref(), Some("Same"));
        assert_eq!(rows[0].description, "a b");
        // No entry reference: an unsplit batch has none.
        assert_eq!(rows[0].external_id, None);
    }

    #[test]
    fn a_single_detail_uses_the_entry_amount() {
        for amount_markup in ["", &tx_amt("0.01"), r#"<Amt Ccy="SEK">0</Amt>"#] {
            let entry = ntry(
                r#"<Amt Ccy="EUR">8.85</Amt>"#,
                "CRDT",
                &format!("<NtryDtls>{}</NtryDtls>", tx("", amount_markup, "")),
            );
            let parsed = parse_ok(&doc(&entry));
            let rows = ok_rows(&parsed);
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].amount, dec(885, 2), "{amount_markup}");
            assert_eq!(rows[0].currency.as_deref(), Some("EUR"));
            assert_eq!(parsed.warnings, vec![]);
        }
    }

    #[test]
    fn external_ids_fall_back_in_order() {
        let refs = |acct: &str, e2e: &str| {
            format!("<Refs><AcctSvcrRef>{acct}</AcctSvcrRef><EndToEndId>{e2e}</EndToEndId></Refs>")
        };
        // (entry-level refs, detail refs, external id)
        let cases = [
            (
                "<NtryRef>N</NtryRef><AcctSvcrRef>A</AcctSvcrRef>",
                refs("TA", "E"),
                Some("A"),
            ),
            ("<NtryRef>N</NtryRef>", refs("TA", "E"), Some("N")),
            (
                "<NtryRef> </NtryRef><AcctSvcrRef>NOTPROVIDED</AcctSvcrRef>",
                refs("TA", "E"),
                Some("TA"),
            ),
            ("", refs("", "E"), Some("E")),
            ("", refs("NOTPROVIDED", "NOTPROVIDED"), None),
            (
                "",
                "<Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>".into(),
                None,
            ),
            ("", String::new(), None),
            (
                "<AcctSvcrRef>  A 1  </AcctSvcrRef>",
                String::new(),
                Some("A 1"),
            ),
        ];
        for (entry_refs, detail_refs, want) in cases {
            let entry = ntry(
                r#"<Amt Ccy="EUR">1.00</Amt>"#,
                "DBIT",
                &format!(
                    "{entry_refs}<NtryDtls>{}</NtryDtls>",
                    tx(&detail_refs, "", "")
                ),
            );
            let rows = ok_rows(&parse_ok(&doc(&entry)));
            assert_eq!(
                rows[0].external_id.as_deref(),
                want,
                "{entry_refs} {detail_refs}"
            );
        }
        // No details at all.
        let rows = ok_rows(&parse_ok(&doc(&ntry(
            r#"<Amt Ccy="EUR">1.00</Amt>"#,
            "DBIT",
            "<NtryRef>N</NtryRef>",
        ))));
        assert_eq!(rows[0].external_id.as_deref(), Some("N"));

        // A split batch without an entry reference: each detail's own, with its index.
        let details = tx(&refs("", "E1"), &tx_amt("1.00"), "")
            + &tx(&refs("", "NOTPROVIDED"), &tx_amt("2.00"), "");
        let entry = ntry(
            r#"<Amt Ccy="EUR">3.00</Amt>"#,
            "DBIT",
            &format!("<NtryDtls>{details}</NtryDtls>"),
        );
        let rows = ok_rows(&parse_ok(&doc(&entry)));
        let ids: Vec<_> = rows.iter().map(|r| r.external_id.as_deref()).collect();
        assert_eq!(ids, vec![Some("E1/1"), None]);
    }

    #[test]
    fn counterparty_and_description() {
        let parties = "<RltdPties><Dbtr><Nm> Payer </Nm></Dbtr><Cdtr><Pty><Nm>Payee</Nm></Pty></Cdtr></RltdPties>";
        // (indicator, detail children, AddtlNtryInf, merchant, description)
        let cases = [
            (
                "DBIT",
                format!("{parties}<RmtInf><Ustrd> l1 </Ustrd><Ustrd>l2</Ustrd></RmtInf>"),
                "",
                Some("Payee"),
                "l1 l2",
            ),
            (
                "CRDT",
                format!("{parties}<AddtlTxInf>tx</AddtlTxInf>"),
                "<AddtlNtryInf>entry</AddtlNtryInf>",
                Some("Payer"),
                "entry",
            ),
            (
                "CRDT",
                format!("{parties}<AddtlTxInf> tx </AddtlTxInf>"),
                "",
                Some("Payer"),
                "tx",
            ),
            (
                "CRDT",
                "<RltdPties><Cdtr><Nm>Me</Nm></Cdtr></RltdPties>".into(),
                "",
                None,
                "",
            ),
            (
                "DBIT",
                "<RltdPties><Cdtr><Nm></Nm></Cdtr></RltdPties><RmtInf><Ustrd></Ustrd></RmtInf>"
                    .into(),
                "",
                None,
                "",
            ),
            (
                "DBIT",
                "<RmtInf><Ustrd>A &amp; B &lt;3 &#228;</Ustrd></RmtInf>".into(),
                "",
                None,
                "A & B <3 ä",
            ),
            (
                "DBIT",
                "<RmtInf><Ustrd><![CDATA[x & y]]></Ustrd></RmtInf>".into(),
                "",
                None,
                "x & y",
            ),
            (
                "DBIT",
                "<RmtInf><Strd><CdtrRefInf><Ref>RF18</Ref></CdtrRefInf></Strd></RmtInf>".into(),
                "",
                None,
                "",
            ),
        ];
        for (ind, children, addtl, merchant, description) in cases {
            let entry = ntry(
                r#"<Amt Ccy="EUR">1.00</Amt>"#,
                ind,
                &format!("<NtryDtls>{}</NtryDtls>{addtl}", tx("", "", &children)),
            );
            let rows = ok_rows(&parse_ok(&doc(&entry)));
            assert_eq!(rows[0].merchant.as_deref(), merchant, "{children}");
            assert_eq!(rows[0].description, description, "{children}");
        }
        // No details: AddtlNtryInf.
        let entry = ntry(
            r#"<Amt Ccy="EUR">1.00</Amt>"#,
            "DBIT",
            "<AddtlNtryInf> Fee </AddtlNtryInf>",
        );
        let rows = ok_rows(&parse_ok(&doc(&entry)));
        assert_eq!(
            (rows[0].merchant.as_deref(), rows[0].description.as_str()),
            (None, "Fee")
        );
    }

    #[test]
    fn repeated_elements_need_not_be_adjacent() {
        // Ntry, then something else, then Ntry; Ustrd around a Strd; TxDtls around an
        // unknown element; the ordinals follow the file.
        let entries = format!(
            "{}<AddtlStmtInf>between</AddtlStmtInf>{}",
            ntry(
                r#"<Amt Ccy="EUR">1.00</Amt>"#,
                "DBIT",
                "<NtryDtls><TxDtls><RmtInf><Ustrd>a</Ustrd><Strd/><Ustrd>b</Ustrd></RmtInf></TxDtls></NtryDtls>"
            ),
            ntry(
                r#"<Amt Ccy="EUR">3.00</Amt>"#,
                "DBIT",
                &format!(
                    "<AcctSvcrRef>X</AcctSvcrRef><NtryDtls>{}<Btch/>{}</NtryDtls>",
                    tx("", &tx_amt("1.00"), ""),
                    tx("", &tx_amt("2.00"), "")
                ),
            )
        );
        let parsed = parse_ok(&doc(&entries));
        let rows = ok_rows(&parsed);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].description, "a b");
        assert_eq!(rows[2].external_id.as_deref(), Some("X/2"));
        assert_eq!(
            rows.iter().map(|r| r.row).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // Two NtryDtls blocks count as one list of details.
        let entry = ntry(
            r#"<Amt Ccy="EUR">3.00</Amt>"#,
            "CRDT",
            &format!(
                "<NtryDtls>{}</NtryDtls><NtryDtls>{}</NtryDtls>",
                tx("", &tx_amt("1.00"), ""),
                tx("", &tx_amt("2.00"), "")
            ),
        );
        assert_eq!(ok_rows(&parse_ok(&doc(&entry))).len(), 2);
    }

    #[test]
    fn statements_with_different_accounts() {
        let text = r#"<Document><BkToCstmrStmt>
<Stmt><Acct><Id><IBAN> DE1 </IBAN></Id><Ccy>eur</Ccy></Acct>
 <Ntry><Amt>1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2024-01-01</Dt></BookgDt></Ntry></Stmt>
<Stmt><Acct><Id><Othr><Id>12345</Id></Othr></Id><Ccy>JPY</Ccy></Acct>
 <Ntry><Amt>500</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2024-01-01</Dt></BookgDt></Ntry></Stmt>
<Stmt/>
</BkToCstmrStmt></Document>"#;
        let parsed = parse_ok(text);
        assert_eq!(
            parsed.statements,
            vec![
                stmt(Some("DE1"), Some("EUR")),
                stmt(Some("12345"), Some("JPY")),
                stmt(None, None)
            ]
        );
        let rows = ok_rows(&parsed);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.row, r.statement, r.amount, r.currency.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 0, dec(100, 2), Some("EUR")),
                (2, 1, dec(-500, 0), Some("JPY"))
            ]
        );

        let parsed = parse_ok("<Document><BkToCstmrStmt><GrpHdr/></BkToCstmrStmt></Document>");
        assert_eq!(parsed.rows, vec![]);
        assert_eq!(parsed.warnings.len(), 1);
    }

    #[test]
    fn files_that_are_not_camt053_or_not_xml_are_refused() {
        // (input, words of the error)
        let cases = [
            (
                "",
                "the XML is not well formed: the file has no root element",
            ),
            ("   \n", "no root element"),
            (
                "Date;Amount\n2024-01-01;1,00\n",
                "the XML is not well formed: text outside the root element",
            ),
            (
                "<Document><BkToCstmrAcctRpt/></Document>",
                "camt.052 account report",
            ),
            ("<Document><BkToCstmrDbtCdtNtfctn/></Document>", "camt.054"),
            (
                "<OFX><BANKMSGSRSV1/></OFX>",
                "not a camt.053 bank statement: the document has no BkToCstmrStmt",
            ),
            (
                "<Document><BkToCstmrStmt><Stmt></Ntry></Stmt></BkToCstmrStmt></Document>",
                "not well formed",
            ),
            ("<Document><BkToCstmrStmt></Document>", "not well formed"),
            (
                "<Document><BkToCstmrStmt/></Document><Document/>",
                "more than one root element",
            ),
            (
                "<Document><BkToCstmrStmt><Stmt><Ntry><AddtlNtryInf>&nbsp;</AddtlNtryInf></Ntry></Stmt></BkToCstmrStmt></Document>",
                "not well formed",
            ),
            (
                "<Document a=\"1\" a=\"2\"><BkToCstmrStmt/></Document>",
                "not well formed",
            ),
            (
                "<Document><BkToCstmrStmt><Stmt><Ntry><Amt Ccy=\"EUR\">1.00",
                "it looks truncated",
            ),
            (
                "<Document><BkToCstmrStmt><Stmt><Ntry><Amt Ccy=\"EUR",
                "not well formed",
            ),
            // An element the model reads as text holds elements instead.
            (
                "<Document><BkToCstmrStmt><Stmt><Ntry><AcctSvcrRef><X/></AcctSvcrRef></Ntry></Stmt></BkToCstmrStmt></Document>",
                "the camt.053 document cannot be read",
            ),
        ];
        for (text, words) in cases {
            match parse(text) {
                Err(FormatError(reason)) => assert!(reason.contains(words), "{text}: {reason}"),
                Ok(parsed) => panic!("{text}: parsed {parsed:?}"),
            }
        }
        // A BOM left in front of the text is fine.
        assert!(parse(&format!("\u{feff}{}", doc(""))).is_ok());
    }

    #[test]
    fn declared_charsets() {
        let cases: [(&[u8], Option<&str>); 12] = [
            (
                br#"<?xml version="1.0" encoding="UTF-8"?><Document/>"#,
                Some("UTF-8"),
            ),
            (
                br#"<?xml version='1.0' encoding='ISO-8859-1'?>"#,
                Some("ISO-8859-1"),
            ),
            (
                b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding = \"windows-1252\" ?>",
                Some("windows-1252"),
            ),
            (
                b"\n  <?xml version=\"1.0\"\n encoding=\"latin1\"?>",
                Some("latin1"),
            ),
            (br#"<?xml version="1.0"?><Document/>"#, None),
            (br#"<?xml version="1.0" standalone="yes"?>"#, None),
            (br#"<Document encoding="UTF-8"/>"#, None),
            (br#"<?xml version="1.0" encoding="UTF-8"#, None),
            (br#"<?xml version="1.0" encoding=UTF-8?>"#, None),
            (br#"<?xml version="1.0" encoding=""?>"#, None),
            (br#"<?xmlfoo encoding="UTF-8"?>"#, None),
            (b"", None),
        ];
        for (head, want) in cases {
            assert_eq!(
                declared_charset(head).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn sniffing() {
        let long_header = format!(
            "<?xml version=\"1.0\"?><!--{}--><Document><BkToCstmrStmt>",
            "x".repeat(3000)
        );
        let cases = [
            (doc(""), true),
            (
                r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">"#.into(),
                true,
            ),
            (
                "\u{feff}<?xml version=\"1.0\"?>\n<Document><BkToCstmrStmt>".into(),
                true,
            ),
            ("<Document><BkToCstmrAcctRpt>".into(), false),
            ("OFXHEADER:100\nDATA:OFXSGML\n<OFX>".into(), false),
            (
                "Date;Text\n2024-01-01;camt.053 BkToCstmrStmt\n".into(),
                false,
            ),
            (long_header, false),
            (
                format!("<Document><BkToCstmrStmt>{}", "é".repeat(2000)),
                true,
            ),
            (String::new(), false),
        ];
        for (head, want) in cases {
            assert_eq!(
                sniff(&head),
                want,
                "{}",
                head.chars().take(80).collect::<String>()
            );
        }
        // A cut inside a multi-byte character at the 2 KiB mark.
        let text = format!("<{}", "é".repeat(1500));
        assert!(!sniff(&text));
        if let Some(text) = fixture("camt053_v08_ch_ubs.xml") {
            assert!(sniff(&text));
        }
    }

    #[test]
    fn amount_display_in_messages() {
        for (d, want) in [
            (dec(-900, 2), "-9.00"),
            (dec(5, 2), "0.05"),
            (dec(2700, 0), "2700"),
            (dec(-1, 3), "-0.001"),
        ] {
            assert_eq!(show(Some(d)), want);
        }
        assert_eq!(show(None), "?");
    }
}
