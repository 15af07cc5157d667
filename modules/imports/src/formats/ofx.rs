//! OFX 1.x (SGML), OFX 2.x (XML) and QFX, read by our own tokenizer with one rule set for
//! all three (INTEGRATIONS.md §1 "OFX"):
//!
//! - The header is everything before the first `<`: `KEY:VALUE` lines in 1.x (blank lines
//!   allowed before `OFXHEADER`), `<?xml …?><?OFX …?>` processing instructions in 2.x.
//! - Tokens are `<TAG>`, `</TAG>`, text and `<![CDATA[…]]>`; comments, processing
//!   instructions and declarations are skipped. Tag names are upper-cased and may hold dots
//!   (QFX `INTU.BID`). A `<` that starts no markup is literal text.
//! - An element followed by non-blank text is a leaf: it closes at the next tag, and a
//!   matching `</TAG>` is swallowed. Aggregates close on their end tag (which also closes
//!   whatever is still open inside them). At the end of the file everything open is closed,
//!   and what was still open decides whether the file was cut short.
//! - Text is unescaped once (`&amp; &lt; &gt; &quot; &apos; &#NN; &#xNN;`, a bare `&` or an
//!   unknown entity stays literal), CDATA is taken as is, and `NAME` and `MEMO` are unescaped
//!   once more because banks double-escape.
//!
//! Dates are the first 8 characters (`YYYYMMDD`) of `DTPOSTED`, never shifted by the
//! `[offset:TZ]` suffix. Amounts are `TRNAMT` as signed by the file (the account holder's
//! view), with a warning when the sign disagrees with `TRNTYPE` `DEBIT`/`CREDIT`.

use std::borrow::Cow;

use chrono::NaiveDate;

use super::{Decimal, FormatError, Parsed, ParsedRow, Rejected, StatementInfo, Warning};

/// Deeper than any OFX document (about ten levels); refuses hostile nesting before it can
/// exhaust the stack.
const MAX_DEPTH: usize = 100;

/// Elements that are leaves even when the file gives them no text (`<MEMO>` directly
/// followed by the next tag in SGML): a start tag that follows one closes it instead of
/// nesting inside it.
const KNOWN_LEAVES: &[&str] = &[
    "ACCTID",
    "ACCTKEY",
    "ACCTTYPE",
    "BALAMT",
    "BANKID",
    "BRANCHID",
    "CHECKNUM",
    "CODE",
    "CORRECTACTION",
    "CORRECTFITID",
    "CURDEF",
    "CURRATE",
    "CURSYM",
    "DTASOF",
    "DTAVAIL",
    "DTEND",
    "DTPOSTED",
    "DTSERVER",
    "DTSTART",
    "DTUSER",
    "EXTDNAME",
    "FID",
    "FITID",
    "LANGUAGE",
    "MEMO",
    "MESSAGE",
    "NAME",
    "ORG",
    "PAYEEID",
    "REFNUM",
    "SEVERITY",
    "SIC",
    "SRVRTID",
    "TRNAMT",
    "TRNTYPE",
    "TRNUID",
];

/// Aggregates that hold a statement: the file ending while one is open means transactions
/// may be missing.
const STATEMENT_AGGREGATES: &[&str] = &[
    "BANKTRANLIST",
    "STMTRS",
    "CCSTMTRS",
    "STMTTRNRS",
    "CCSTMTTRNRS",
];

/// Parses a decoded OFX 1.x, OFX 2.x or QFX file: one [`StatementInfo`] per bank or
/// credit-card statement (`STMTRS`/`CCSTMTRS`, each normally inside its
/// `STMTTRNRS`/`CCSTMTTRNRS`), one row per `STMTTRN` numbered by its ordinal in the file.
///
/// Refuses text that holds no `<OFX>` element or no statement, and a file that ends inside
/// a statement or a transaction (a cut download must not import a partial amount).
pub fn parse(text: &str) -> Result<Parsed, FormatError> {
    let text = text.trim_start_matches('\u{feff}');
    let Some(start) = text.find('<') else {
        return Err(not_ofx());
    };
    let doc = build(tokenize(&text[start..]))?;
    let Some(ofx) = find_first(&doc.roots, "OFX") else {
        return Err(not_ofx());
    };

    let mut parsed = Parsed::default();
    if doc.open_at_eof.iter().any(|n| n == "STMTTRN") {
        return Err(FormatError(
            "the file ends inside a transaction (truncated?)".into(),
        ));
    }
    if doc
        .open_at_eof
        .iter()
        .any(|n| STATEMENT_AGGREGATES.contains(&n.as_str()))
    {
        return Err(FormatError(
            "the file ends inside a statement, before the end of its transaction list \
             (truncated?)"
                .into(),
        ));
    }

    let mut statements = Vec::new();
    let mut refusals = Vec::new();
    collect_statements(ofx, &mut statements, &mut refusals);
    if statements.is_empty() {
        let mut reason = String::from("the OFX file holds no bank or credit-card statement");
        if !refusals.is_empty() {
            reason.push_str(": ");
            reason.push_str(&refusals.join("; "));
        } else if !doc.open_at_eof.is_empty() {
            reason.push_str(" (it ends before its closing </OFX> tag: truncated?)");
        }
        return Err(FormatError(reason));
    }
    if !doc.open_at_eof.is_empty() {
        parsed.warnings.push(Warning {
            row: None,
            message: "the file ends before its closing </OFX> tag; every statement in it is \
                      complete, but a later one may be missing (truncated?)"
                .into(),
        });
    }
    for refusal in refusals {
        parsed.warnings.push(Warning {
            row: None,
            message: refusal,
        });
    }

    let mut ordinal: u32 = 0;
    for (index, stmt) in statements.iter().enumerate() {
        let currency = stmt.leaf("CURDEF").and_then(currency_code);
        let account = stmt
            .child("BANKACCTFROM")
            .or_else(|| stmt.child("CCACCTFROM"))
            .and_then(|from| from.leaf("ACCTID"))
            .map(str::to_string);
        parsed.statements.push(StatementInfo {
            account,
            currency: currency.clone(),
        });

        let mut transactions = Vec::new();
        stmt.descendants("STMTTRN", &mut transactions);
        for trn in transactions {
            ordinal = ordinal.saturating_add(1);
            let row = read_transaction(trn, ordinal, index, currency.as_deref(), &mut parsed);
            parsed.rows.push(row);
        }

        let mut pending = Vec::new();
        stmt.descendants("STMTTRNP", &mut pending);
        if !pending.is_empty() {
            parsed.warnings.push(Warning {
                row: None,
                message: format!(
                    "{} pending transaction(s) (STMTTRNP) skipped: only posted transactions \
                     are imported",
                    pending.len()
                ),
            });
        }
    }
    Ok(parsed)
}

/// The charset the header of an OFX file declares, as a label
/// [`encoding_rs::Encoding::for_label`] accepts (the encoding's canonical name, lower-cased):
/// 1.x `ENCODING:UTF-8` gives `utf-8`; otherwise `CHARSET:1252` gives `windows-1252`,
/// `CHARSET:ISO-8859-1` gives `windows-1252` (the WHATWG mapping); 2.x takes the
/// `<?xml encoding="…"?>` attribute. `None` when the header declares nothing usable
/// (`CHARSET:NONE`, no header, an unknown label).
pub fn declared_charset(text_head: &[u8]) -> Option<String> {
    let head = &text_head[..text_head.len().min(4096)];
    let head = String::from_utf8_lossy(head);
    let head = head.trim_start_matches('\u{feff}').trim_start();
    if head.starts_with('<') {
        return xml_encoding(head).and_then(|label| canonical_label(&label));
    }
    let region = head[..head.find('<').unwrap_or(head.len())].to_ascii_uppercase();
    let encoding = header_value(&region, "ENCODING");
    if matches!(encoding, Some("UTF-8" | "UTF8" | "UNICODE")) {
        return Some("utf-8".into());
    }
    let charset = header_value(&region, "CHARSET")?;
    if charset.is_empty() || charset == "NONE" {
        return None;
    }
    if charset.bytes().all(|b| b.is_ascii_digit()) {
        // A Windows code page number: 1252, 1250…; `8859-1` style is handled below.
        return canonical_label(&format!("windows-{charset}"))
            .or_else(|| canonical_label(&format!("cp{charset}")));
    }
    if let Some(part) = charset.strip_prefix("8859-") {
        return canonical_label(&format!("iso-8859-{part}"));
    }
    canonical_label(charset)
}

/// Whether the start of a file (its first KiB is read) looks like OFX or QFX: a 1.x
/// `OFXHEADER:` line, a 2.x `<?OFX` instruction or an `<OFX>` tag.
pub fn sniff(head: &str) -> bool {
    let mut end = head.len().min(1024);
    while !head.is_char_boundary(end) {
        end -= 1;
    }
    let head = head[..end].to_ascii_uppercase();
    if head.contains("<?OFX") || head.contains("<OFX>") {
        return true;
    }
    let mut from = 0;
    while let Some(p) = head[from..].find("OFXHEADER") {
        let after = from + p + "OFXHEADER".len();
        if head[after..]
            .trim_start_matches([' ', '\t'])
            .starts_with(':')
        {
            return true;
        }
        from = after;
    }
    false
}

fn not_ofx() -> FormatError {
    FormatError("not an OFX file: no <OFX> element".into())
}

// ---------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------

/// The value after `KEY:` in a 1.x header region (already upper-cased), up to whitespace.
fn header_value<'a>(region: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(p) = region[from..].find(key) {
        let at = from + p;
        let after = at + key.len();
        let at_token_start = at == 0 || region.as_bytes()[at - 1].is_ascii_whitespace();
        if at_token_start
            && let Some(value) = region[after..]
                .trim_start_matches([' ', '\t'])
                .strip_prefix(':')
        {
            let value = value.trim_start_matches([' ', '\t']);
            let end = value.find(char::is_whitespace).unwrap_or(value.len());
            return Some(&value[..end]);
        }
        from = after;
    }
    None
}

/// The `encoding` attribute of a leading `<?xml …?>` declaration.
fn xml_encoding(head: &str) -> Option<String> {
    if !head.get(..5)?.eq_ignore_ascii_case("<?xml") {
        return None;
    }
    let decl = &head[..head.find("?>")?];
    let lower = decl.to_ascii_lowercase();
    let at = lower.find("encoding")?;
    let rest = decl[at + "encoding".len()..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].trim().to_string())
}

fn canonical_label(label: &str) -> Option<String> {
    encoding_rs::Encoding::for_label(label.trim().as_bytes())
        .map(|encoding| encoding.name().to_ascii_lowercase())
}

// ---------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Token {
    Start(String),
    End(String),
    /// Text between tags, unescaped.
    Text(String),
    /// The content of a CDATA section, as is.
    CData(String),
}

/// Whether the `<` at the start of `rest` opens markup (a tag, an end tag, `<!…>`, `<?…?>`)
/// rather than being a literal character.
fn markup_at(rest: &str) -> bool {
    let b = rest.as_bytes();
    match b.get(1) {
        Some(b'!' | b'?') => true,
        Some(b'/') => {
            matches!(b.get(2), Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b'>')
        }
        Some(c) => c.is_ascii_alphabetic() || *c == b'_',
        None => false,
    }
}

/// The end of a tag that starts at `rest[0] == '<'`: the index of its `>`, or of a `<`
/// that comes first (a tag missing its `>`), or `None` when the text ends inside it.
fn tag_end(rest: &str) -> Option<(usize, bool)> {
    let p = rest[1..].find(['>', '<'])? + 1;
    Some((p, rest.as_bytes()[p] == b'>'))
}

fn tag_name(content: &str) -> String {
    let end = content
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(content.len());
    content[..end].to_ascii_uppercase()
}

fn tokenize(body: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let flush = |text: &mut String, tokens: &mut Vec<Token>| {
        if !text.is_empty() {
            tokens.push(Token::Text(unescape(text).into_owned()));
            text.clear();
        }
    };
    while i < body.len() {
        let Some(off) = body[i..].find('<') else {
            text.push_str(&body[i..]);
            break;
        };
        let lt = i + off;
        text.push_str(&body[i..lt]);
        let rest = &body[lt..];
        if !markup_at(rest) {
            text.push('<');
            i = lt + 1;
            continue;
        }
        flush(&mut text, &mut tokens);
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            match cdata.find("]]>") {
                Some(p) => {
                    tokens.push(Token::CData(cdata[..p].to_string()));
                    i = lt + "<![CDATA[".len() + p + "]]>".len();
                }
                None => {
                    tokens.push(Token::CData(cdata.to_string()));
                    i = body.len();
                }
            }
            continue;
        }
        // Comments, processing instructions (`<?xml?>`, `<?OFX?>`) and declarations.
        let skip = if rest.starts_with("<!--") {
            Some(("-->", 4))
        } else if rest.starts_with("<?") {
            Some(("?>", 2))
        } else if rest.starts_with("<!") {
            Some((">", 2))
        } else {
            None
        };
        if let Some((close, from)) = skip {
            i = rest[from..]
                .find(close)
                .map_or(body.len(), |p| lt + from + p + close.len());
            continue;
        }
        let Some((p, closed)) = tag_end(rest) else {
            // The text ends inside a tag: the element never opened.
            i = body.len();
            continue;
        };
        if let Some(content) = rest[..p].strip_prefix("</") {
            tokens.push(Token::End(tag_name(content.trim())));
        } else {
            let content = &rest[1..p];
            let name = tag_name(content);
            let self_closing = content.trim_end().ends_with('/');
            tokens.push(Token::Start(name.clone()));
            if self_closing {
                tokens.push(Token::End(name));
            }
        }
        i = lt + p + usize::from(closed);
    }
    flush(&mut text, &mut tokens);
    tokens
}

/// Replaces `&amp; &lt; &gt; &quot; &apos; &#NN; &#xNN;`; a bare `&` or an unknown entity
/// (`&copy;`) stays as it is.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        match entity(after) {
            Some((c, len)) => {
                out.push(c);
                rest = &after[len..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The character an entity reference stands for and its length up to and including `;`.
fn entity(after: &str) -> Option<(char, usize)> {
    let semi = after.bytes().take(12).position(|b| b == b';')?;
    let name = &after[..semi];
    let named = [
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
    ];
    if let Some((_, c)) = named.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return Some((*c, semi + 1));
    }
    let number = name.strip_prefix('#')?;
    let code = if let Some(hex) = number.strip_prefix(['x', 'X']) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(hex, 16).ok()?
    } else {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        number.parse::<u32>().ok()?
    };
    let c = char::from_u32(code).filter(|c| *c != '\0')?;
    Some((c, semi + 1))
}

// ---------------------------------------------------------------------------------------
// Tree
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Element {
    name: String,
    /// The text of a leaf (`None` for an aggregate or an empty element).
    text: Option<String>,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The trimmed, non-empty text of the child leaf `name`.
    fn leaf(&self, name: &str) -> Option<&str> {
        self.child(name)?
            .text
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Every descendant named `name`, in document order, not looking inside a match.
    fn descendants<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        for c in &self.children {
            if c.name == name {
                out.push(c);
            } else {
                c.descendants(name, out);
            }
        }
    }

    fn is_leaf(&self) -> bool {
        self.text.is_some() || KNOWN_LEAVES.contains(&self.name.as_str())
    }
}

struct Document {
    roots: Vec<Element>,
    /// The names of the elements still open when the text ended, outermost first.
    open_at_eof: Vec<String>,
}

fn close_top(stack: &mut Vec<Element>, roots: &mut Vec<Element>) {
    if let Some(element) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => roots.push(element),
        }
    }
}

fn close_through(stack: &mut Vec<Element>, roots: &mut Vec<Element>, name: &str) {
    if let Some(pos) = stack.iter().rposition(|e| e.name == name) {
        while stack.len() > pos {
            close_top(stack, roots);
        }
    }
}

/// Adds text to the open element: it makes an element without children a leaf. Blank text
/// only counts inside a leaf that already has text; text after an aggregate's children is
/// stray and dropped.
fn push_text(stack: &mut [Element], text: &str, cdata: bool) {
    let Some(top) = stack.last_mut() else {
        return;
    };
    if !top.children.is_empty() || (!cdata && top.text.is_none() && text.trim().is_empty()) {
        return;
    }
    top.text.get_or_insert_with(String::new).push_str(text);
}

fn build(tokens: Vec<Token>) -> Result<Document, FormatError> {
    let mut stack: Vec<Element> = Vec::new();
    let mut roots = Vec::new();
    for token in tokens {
        match token {
            Token::Start(name) => {
                if stack.last().is_some_and(Element::is_leaf) {
                    close_top(&mut stack, &mut roots);
                }
                // No OFX aggregate contains itself: a second `<STMTTRN>` while one is open
                // means the first one's end tag is missing.
                close_through(&mut stack, &mut roots, &name);
                if stack.len() >= MAX_DEPTH {
                    return Err(FormatError(format!(
                        "the file nests elements more than {MAX_DEPTH} deep; not an OFX file"
                    )));
                }
                stack.push(Element {
                    name,
                    ..Element::default()
                });
            }
            Token::End(name) if name.is_empty() => close_top(&mut stack, &mut roots),
            Token::End(name) => close_through(&mut stack, &mut roots, &name),
            Token::Text(text) => push_text(&mut stack, &text, false),
            Token::CData(text) => push_text(&mut stack, &text, true),
        }
    }
    let open_at_eof = stack.iter().map(|e| e.name.clone()).collect();
    while !stack.is_empty() {
        close_top(&mut stack, &mut roots);
    }
    Ok(Document { roots, open_at_eof })
}

fn find_first<'a>(elements: &'a [Element], name: &str) -> Option<&'a Element> {
    elements.iter().find_map(|e| {
        if e.name == name {
            Some(e)
        } else {
            find_first(&e.children, name)
        }
    })
}

// ---------------------------------------------------------------------------------------
// Statements and transactions
// ---------------------------------------------------------------------------------------

/// Pushes every `STMTRS`/`CCSTMTRS` under `element`; for a transaction wrapper that holds
/// none (the bank refused the request), pushes its status to `refusals`.
fn collect_statements<'a>(
    element: &'a Element,
    statements: &mut Vec<&'a Element>,
    refusals: &mut Vec<String>,
) {
    for c in &element.children {
        match c.name.as_str() {
            "STMTRS" | "CCSTMTRS" => statements.push(c),
            "STMTTRNRS" | "CCSTMTTRNRS" => {
                let before = statements.len();
                collect_statements(c, statements, refusals);
                if statements.len() == before {
                    let status = c.child("STATUS");
                    let code = status.and_then(|s| s.leaf("CODE")).unwrap_or("none");
                    let mut refusal = format!("{} without a statement (status code {code}", c.name);
                    if let Some(message) = status.and_then(|s| s.leaf("MESSAGE")) {
                        refusal.push_str(": ");
                        refusal.push_str(message);
                    }
                    refusal.push(')');
                    refusals.push(refusal);
                }
            }
            _ => collect_statements(c, statements, refusals),
        }
    }
}

fn read_transaction(
    trn: &Element,
    row: u32,
    statement: usize,
    statement_currency: Option<&str>,
    parsed: &mut Parsed,
) -> Result<ParsedRow, Rejected> {
    let reject = |field: &str, reason: String| Rejected {
        row,
        field: field.into(),
        reason,
    };
    let date = match trn.leaf("DTPOSTED") {
        None => return Err(reject("date", "the transaction has no DTPOSTED".into())),
        Some(text) => ofx_date(text).ok_or_else(|| {
            reject(
                "date",
                format!("DTPOSTED {text:?} does not start with a YYYYMMDD date"),
            )
        })?,
    };
    let amount = match trn.leaf("TRNAMT") {
        None => return Err(reject("amount", "the transaction has no TRNAMT".into())),
        Some(text) => ofx_amount(text)
            .ok_or_else(|| reject("amount", format!("TRNAMT {text:?} is not an amount")))?,
    };
    let mut warn = |message: String| {
        parsed.warnings.push(Warning {
            row: Some(row),
            message,
        })
    };

    let value_date = trn.leaf("DTAVAIL").and_then(|text| {
        let date = ofx_date(text);
        if date.is_none() {
            warn(format!(
                "DTAVAIL {text:?} is not a date; the row has no value date"
            ));
        }
        date
    });

    let trntype = trn.leaf("TRNTYPE").map(str::to_ascii_uppercase);
    let amount_text = trn.leaf("TRNAMT").unwrap_or_default();
    match trntype.as_deref() {
        Some("DEBIT") if amount.units > 0 => warn(format!(
            "TRNTYPE DEBIT but TRNAMT {amount_text} is positive; the amount's sign is kept"
        )),
        Some("CREDIT") if amount.units < 0 => warn(format!(
            "TRNTYPE CREDIT but TRNAMT {amount_text} is negative; the amount's sign is kept"
        )),
        _ => {}
    }

    if let Some(action) = trn.leaf("CORRECTACTION") {
        let target = trn.leaf("CORRECTFITID").unwrap_or("?");
        warn(format!(
            "the bank marks this row as a correction ({action} of FITID {target}); check the \
             corrected transaction by hand"
        ));
    }

    // CURRENCY: TRNAMT is in CURSYM. ORIGCURRENCY: TRNAMT is already in CURDEF (CURSYM is
    // where it came from), so the statement's currency applies.
    let mut currency = statement_currency.map(str::to_string);
    if let Some(cursym) = trn.child("CURRENCY").and_then(|c| c.leaf("CURSYM")) {
        match currency_code(cursym) {
            Some(code) => currency = Some(code),
            None => warn(format!(
                "CURRENCY/CURSYM {cursym:?} is not an ISO 4217 code; the statement's currency \
                 applies"
            )),
        }
    }

    let text = |name: &str| {
        trn.leaf(name)
            .map(|t| unescape(t).trim().to_string())
            .filter(|t| !t.is_empty())
    };
    let merchant = text("NAME").or_else(|| {
        trn.child("PAYEE")
            .and_then(|p| p.leaf("NAME"))
            .map(|t| unescape(t).trim().to_string())
            .filter(|t| !t.is_empty())
    });
    let mut description = text("MEMO").unwrap_or_default();
    if let Some(check) = trn.leaf("CHECKNUM") {
        // `0` (Suncorp) is a placeholder, not a check.
        if !check.bytes().all(|b| b == b'0') {
            if !description.is_empty() {
                description.push_str("; ");
            }
            description.push_str("Check ");
            description.push_str(check);
        }
    }

    Ok(ParsedRow {
        row,
        date,
        value_date,
        amount,
        currency,
        merchant,
        description,
        external_id: trn.leaf("FITID").map(str::to_string),
        category: None,
        statement,
    })
}

/// The booking date of an OFX date-time: its first 8 characters, `YYYYMMDD`, without
/// applying the `[offset:TZ]` suffix (which would move the day).
fn ofx_date(text: &str) -> Option<NaiveDate> {
    let digits = text.trim().get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = digits[..4].parse().ok()?;
    let month = digits[4..6].parse().ok()?;
    let day = digits[6..8].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// An OFX amount (spec 3.2.9.1): an optional leading sign, digits, and at most one radix
/// point, `.` or `,`; no digit grouping.
fn ofx_amount(text: &str) -> Option<Decimal> {
    let text = text.trim();
    let (negative, body) = if let Some(rest) = text.strip_prefix('-') {
        (true, rest.trim_start())
    } else if let Some(rest) = text.strip_prefix('+') {
        (false, rest.trim_start())
    } else {
        (false, text)
    };
    let mut units: i128 = 0;
    let mut scale: Option<u32> = None;
    let mut digits = 0;
    for b in body.bytes() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 30 {
                    return None;
                }
                units = units * 10 + i128::from(b - b'0');
                if let Some(s) = scale.as_mut() {
                    *s += 1;
                }
            }
            b'.' | b',' if scale.is_none() => scale = Some(0),
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    Some(Decimal {
        units: if negative { -units } else { units },
        scale: scale.unwrap_or(0),
    })
}

/// A three-letter currency code, upper-cased.
fn currency_code(text: &str) -> Option<String> {
    let text = text.trim();
    (text.len() == 3 && text.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| text.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/imports/"
    );

    fn fixture_bytes(name: &str) -> Option<Vec<u8>> {
        match std::fs::read(format!("{FIXTURES}{name}")) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                eprintln!("skipped: ../shared/fixtures absent");
                None
            }
        }
    }

    /// The fixture decoded as windows-1252, what its header declares.
    fn fixture_1252(name: &str) -> Option<String> {
        let bytes = fixture_bytes(name)?;
        let (text, _, had_errors) = encoding_rs::WINDOWS_1252.decode(&bytes);
        assert!(!had_errors, "{name}");
        Some(text.into_owned())
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn dec(units: i128, scale: u32) -> Decimal {
        Decimal { units, scale }
    }

    /// A row as the tests expect it: (row, date, amount, currency, merchant, description,
    /// FITID, statement).
    type Want<'a> = (
        u32,
        NaiveDate,
        Decimal,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        usize,
    );

    fn row(want: Want<'_>) -> ParsedRow {
        let (row, date, amount, currency, merchant, description, fitid, statement) = want;
        ParsedRow {
            row,
            date,
            value_date: None,
            amount,
            currency: currency.map(str::to_string),
            merchant: merchant.map(str::to_string),
            description: description.to_string(),
            external_id: fitid.map(str::to_string),
            category: None,
            statement,
        }
    }

    fn ok_rows(parsed: &Parsed) -> Vec<ParsedRow> {
        parsed
            .rows
            .iter()
            .map(|r| r.clone().expect("row parsed"))
            .collect()
    }

    fn statement(account: &str, currency: &str) -> StatementInfo {
        StatementInfo {
            account: Some(account.into()),
            currency: Some(currency.into()),
        }
    }

    /// A minimal 1.x SGML file around `stmttrns` (one checking statement in EUR).
    fn sgml(stmttrns: &str) -> String {
        format!(
            "OFXHEADER:100\nDATA:OFXSGML\nVERSION:102\n\n<OFX>\n<BANKMSGSRSV1>\n<STMTTRNRS>\n\
             <TRNUID>1\n<STMTRS>\n<CURDEF>EUR\n<BANKACCTFROM>\n<ACCTID>42\n</BANKACCTFROM>\n\
             <BANKTRANLIST>\n{stmttrns}\n</BANKTRANLIST>\n</STMTRS>\n</STMTTRNRS>\n\
             </BANKMSGSRSV1>\n</OFX>\n"
        )
    }

    fn one_row(text: &str) -> ParsedRow {
        let parsed = parse(text).expect("parses");
        assert_eq!(parsed.rows.len(), 1, "{parsed:?}");
        parsed.rows[0].clone().expect("row parsed")
    }

    #[test]
    fn ofx102_sgml_checking() {
        let Some(text) = fixture_1252("ofx102_sgml_checking.ofx") else {
            return;
        };
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.statements, vec![statement("1452687~7", "USD")]);
        let want: Vec<ParsedRow> = [
            (
                1,
                date(2011, 3, 31),
                dec(1, 2),
                Some("USD"),
                Some("DIVIDEND EARNED FOR PERIOD OF 03"),
                "DIVIDEND EARNED FOR PERIOD OF 03/01/2011 THROUGH 03/31/2011 ANNUAL \
                 PERCENTAGE YIELD EARNED IS 0.05%",
                Some("0000486"),
                0,
            ),
            (
                2,
                date(2011, 4, 5),
                dec(-3451, 2),
                Some("USD"),
                Some("AUTOMATIC WITHDRAWAL, ELECTRIC BILL"),
                "AUTOMATIC WITHDRAWAL, ELECTRIC BILL WEB(S )",
                Some("0000487"),
                0,
            ),
            (
                3,
                date(2011, 4, 7),
                dec(-2500, 2),
                Some("USD"),
                Some("RETURNED CHECK FEE, CHECK # 319"),
                "RETURNED CHECK FEE, CHECK # 319 FOR $45.33 ON 04/07/11; Check 319",
                Some("0000488"),
                0,
            ),
        ]
        .into_iter()
        .map(row)
        .collect();
        assert_eq!(ok_rows(&parsed), want);
        assert_eq!(parsed.warnings, vec![]);
        assert_eq!(
            declared_charset(text.as_bytes()).as_deref(),
            Some("windows-1252")
        );
        assert!(sniff(&text));
    }

    #[test]
    fn ofx200_xml_checking_suncorp_with_cdata() {
        let Some(text) = fixture_1252("ofx200_xml_checking_suncorp.ofx") else {
            return;
        };
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.statements, vec![statement("123456789", "AUD")]);
        // NAME and MEMO come from CDATA; CHECKNUM 0 is a placeholder and is not appended.
        let want = row((
            1,
            date(2013, 12, 15),
            dec(-1685, 2),
            Some("AUD"),
            Some("EFTPOS WDL HANDYWAY ALDI STORE"),
            "EFTPOS WDL HANDYWAY ALDI STORE   GEELONG WEST VICAU",
            Some("1"),
            0,
        ));
        assert_eq!(ok_rows(&parsed), vec![want]);
        assert_eq!(parsed.warnings, vec![]);
        // `us-ascii` maps to windows-1252 under the WHATWG rules encoding_rs follows.
        assert_eq!(
            declared_charset(text.as_bytes()).as_deref(),
            Some("windows-1252")
        );
        assert!(sniff(&text));
    }

    #[test]
    fn qfx102_creditcard_chase() {
        let Some(bytes) = fixture_bytes("qfx102_creditcard_chase.qfx") else {
            return;
        };
        // The header declares CHARSET:1252 but the bytes are UTF-8 (the `¦` is C2 A6).
        assert_eq!(declared_charset(&bytes).as_deref(), Some("windows-1252"));
        let text = std::str::from_utf8(&bytes).expect("the fixture is valid UTF-8");
        assert!(sniff(text));
        let parsed = parse(text).unwrap();
        assert_eq!(
            parsed.statements,
            vec![statement("0123012301230123", "USD")]
        );
        let want = row((
            1,
            date(2020, 1, 1),
            dec(-1000, 2),
            Some("USD"),
            Some("SQ *ECCO UN POCO \u{a6} NATURA"),
            "",
            Some("2020010112341234123412341234123"),
            0,
        ));
        assert_eq!(ok_rows(&parsed), vec![want]);
        assert_eq!(parsed.warnings, vec![]);
        // Read as the header claims, the same bytes give mojibake: why strict UTF-8 first.
        let (wrong, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
        let wrong = parse(&wrong).unwrap();
        let merchant = wrong.rows[0].as_ref().unwrap().merchant.clone();
        assert_eq!(
            merchant.as_deref(),
            Some("SQ *ECCO UN POCO \u{c2}\u{a6} NATURA")
        );
    }

    #[test]
    fn bad_truncated_is_refused() {
        let Some(text) = fixture_1252("bad_truncated.ofx") else {
            return;
        };
        assert!(sniff(&text));
        assert_eq!(
            parse(&text),
            Err(FormatError(
                "the file ends inside a transaction (truncated?)".into()
            ))
        );
    }

    /// Every prefix of every fixture: no panic, and whatever parses holds only complete
    /// rows that the whole file also gives, in the same order.
    #[test]
    fn truncated_prefixes_never_panic_nor_import_a_partial_row() {
        for name in [
            "ofx102_sgml_checking.ofx",
            "ofx200_xml_checking_suncorp.ofx",
            "qfx102_creditcard_chase.qfx",
            "bad_truncated.ofx",
        ] {
            let Some(bytes) = fixture_bytes(name) else {
                return;
            };
            let text = String::from_utf8_lossy(&bytes);
            let full = parse(&text).ok();
            for end in (0..=text.len()).filter(|&end| text.is_char_boundary(end)) {
                let prefix = &text[..end];
                let _ = sniff(prefix);
                let _ = declared_charset(prefix.as_bytes());
                if let Ok(parsed) = parse(prefix) {
                    let full = full.as_ref().unwrap_or_else(|| {
                        panic!("{name}: prefix of {end} bytes parses, the whole file not")
                    });
                    assert_eq!(parsed.statements, full.statements, "{name} at {end}");
                    assert!(
                        full.rows.starts_with(&parsed.rows),
                        "{name} at {end}: {parsed:?}"
                    );
                    assert_eq!(parsed.rows.len(), full.rows.len(), "{name} at {end}");
                }
            }
        }
    }

    #[test]
    fn truncation_is_told_apart_by_where_the_file_ends() {
        let whole = sgml(
            "<STMTTRN>\n<TRNTYPE>DEBIT\n<DTPOSTED>20240102\n<TRNAMT>-12.50\n<FITID>A1\n\
             </STMTTRN>\n<STMTTRN>\n<TRNTYPE>DEBIT\n<DTPOSTED>20240103\n<TRNAMT>-7.00\n\
             <FITID>A2\n</STMTTRN>",
        );
        let cut = |marker: &str| &whole[..whole.find(marker).unwrap() + marker.len()];
        for (prefix, want) in [
            (
                cut("<TRNAMT>-7"),
                "the file ends inside a transaction (truncated?)",
            ),
            (
                cut("<FITID>A2\n</STMTTRN"),
                "the file ends inside a transaction (truncated?)",
            ),
            (
                cut("<FITID>A1\n</STMTTRN>\n"),
                "the file ends inside a statement, before the end of its transaction list \
                 (truncated?)",
            ),
            (
                cut("</BANKTRANLIST>"),
                "the file ends inside a statement, before the end of its transaction list \
                 (truncated?)",
            ),
            (
                cut("<STMTTRNRS>"),
                "the file ends inside a statement, before the end of its transaction list \
                 (truncated?)",
            ),
            (
                cut("<BANKMSGSRSV1>\n"),
                "the OFX file holds no bank or credit-card statement (it ends before its \
                 closing </OFX> tag: truncated?)",
            ),
        ] {
            assert_eq!(parse(prefix), Err(FormatError(want.into())), "{prefix}");
        }
        // Cut after the last statement: every row is complete, the file is read with a
        // warning.
        let parsed = parse(cut("</STMTTRNRS>")).unwrap();
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.warnings[0].message.contains("</OFX>"));
        assert_eq!(parse(&whole).unwrap().warnings, vec![]);
    }

    #[test]
    fn not_ofx_is_refused() {
        for text in [
            "",
            "   \n",
            "Date,Description,Amount\n2024-01-02,Coffee,-3.50\n",
            "<!DOCTYPE html><html><body>Session expired</body></html>",
            "<?xml version=\"1.0\"?><Document><BkToCstmrStmt/></Document>",
            "OFXHEADER:100\nDATA:OFXSGML\n",
        ] {
            assert_eq!(parse(text), Err(not_ofx()), "{text:?}");
            assert!(!sniff(text) || text.starts_with("OFXHEADER"), "{text:?}");
        }
        // An OFX file without any bank statement (sign-on only, an investment statement).
        let err = parse("<OFX><SIGNONMSGSRSV1><SONRS></SONRS></SIGNONMSGSRSV1></OFX>").unwrap_err();
        assert_eq!(err.0, "the OFX file holds no bank or credit-card statement");
    }

    #[test]
    fn a_refused_request_gives_its_status() {
        let text = "<OFX><BANKMSGSRSV1><STMTTRNRS><TRNUID>1<STATUS><CODE>2000\
                    <SEVERITY>ERROR<MESSAGE>General error</STATUS></STMTTRNRS>\
                    </BANKMSGSRSV1></OFX>";
        assert_eq!(
            parse(text).unwrap_err().0,
            "the OFX file holds no bank or credit-card statement: STMTTRNRS without a \
             statement (status code 2000: General error)"
        );
    }

    #[test]
    fn several_statements_in_one_file() {
        // actualbudget #1884: months combined into one file, here a bank and a card account.
        let text = "OFXHEADER:100\n<OFX>\n<BANKMSGSRSV1>\n\
            <STMTTRNRS><STMTRS><CURDEF>EUR<BANKACCTFROM><BANKID>1<ACCTID>DE001</BANKACCTFROM>\
            <BANKTRANLIST><STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240131<TRNAMT>-1<FITID>X1\
            </STMTTRN><STMTTRN><TRNTYPE>CREDIT<DTPOSTED>20240131<TRNAMT>2<FITID>X2</STMTTRN>\
            </BANKTRANLIST></STMTRS></STMTTRNRS>\n\
            <STMTTRNRS><STMTRS><CURDEF>EUR<BANKACCTFROM><ACCTID>DE001</BANKACCTFROM>\
            <BANKTRANLIST><STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240201<TRNAMT>-3<FITID>X1\
            </STMTTRN></BANKTRANLIST></STMTRS></STMTTRNRS>\n</BANKMSGSRSV1>\n\
            <CREDITCARDMSGSRSV1><CCSTMTTRNRS><CCSTMTRS><CURDEF>GBP<CCACCTFROM><ACCTID>4111\
            </CCACCTFROM><BANKTRANLIST><STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240202<TRNAMT>-4\
            <FITID>C1</STMTTRN></BANKTRANLIST></CCSTMTRS></CCSTMTTRNRS></CREDITCARDMSGSRSV1>\
            </OFX>";
        let parsed = parse(text).unwrap();
        assert_eq!(
            parsed.statements,
            vec![
                statement("DE001", "EUR"),
                statement("DE001", "EUR"),
                statement("4111", "GBP"),
            ]
        );
        let rows = ok_rows(&parsed);
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.row,
                    r.statement,
                    r.amount,
                    r.currency.as_deref(),
                    r.external_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 0, dec(-1, 0), Some("EUR"), Some("X1")),
                (2, 0, dec(2, 0), Some("EUR"), Some("X2")),
                (3, 1, dec(-3, 0), Some("EUR"), Some("X1")),
                (4, 2, dec(-4, 0), Some("GBP"), Some("C1")),
            ]
        );
        assert_eq!(parsed.warnings, vec![]);
    }

    #[test]
    fn entities_bare_ampersands_and_double_escaping() {
        for (name, want) in [
            ("AT&T", "AT&T"),
            ("AT&amp;T", "AT&T"),
            ("Marks &amp;amp; Spencer", "Marks & Spencer"),
            ("B&amp;Q &copy; 2024", "B&Q &copy; 2024"),
            ("Caf&#233; &#xE9;t&#XE9;", "Café été"),
            ("Tom&#039;s &#038; Jerry&apos;s", "Tom's & Jerry's"),
            ("&lt;b&gt;bold&lt;/b&gt; &quot;q&quot;", "<b>bold</b> \"q\""),
            (
                "R&D &; &#; &#x; &#0; &#xD800; &#99999999;",
                "R&D &; &#; &#x; &#0; &#xD800; &#99999999;",
            ),
            ("A < B", "A < B"),
            ("1 <2 3", "1 <2 3"),
        ] {
            let text = sgml(&format!(
                "<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240101<TRNAMT>-1<NAME>{name}\
                 <MEMO>{name}</STMTTRN>"
            ));
            let r = one_row(&text);
            assert_eq!(r.merchant.as_deref(), Some(want), "{name}");
            assert_eq!(r.description, want, "{name}");
        }
        // FITID is unescaped once only (banks double-escape only the texts).
        let r = one_row(&sgml(
            "<STMTTRN><DTPOSTED>20240101<TRNAMT>1<FITID>a&amp;amp;b</STMTTRN>",
        ));
        assert_eq!(r.external_id.as_deref(), Some("a&amp;b"));
        // CDATA is taken as is, then NAME/MEMO are unescaped once.
        let r = one_row(&sgml(
            "<STMTTRN><DTPOSTED>20240101<TRNAMT>1<NAME><![CDATA[AT&amp;T <x>]]></NAME>\
             <MEMO>a <![CDATA[<b>]]> c</MEMO></STMTTRN>",
        ));
        assert_eq!(r.merchant.as_deref(), Some("AT&T <x>"));
        assert_eq!(r.description, "a <b> c");
    }

    #[test]
    fn dates_take_the_first_eight_characters_without_tz_shift() {
        for (text, want) in [
            ("20200101", Some(date(2020, 1, 1))),
            ("20200101120000", Some(date(2020, 1, 1))),
            ("20200101120000.000", Some(date(2020, 1, 1))),
            ("20200101120000[0:GMT]", Some(date(2020, 1, 1))),
            ("20200101233000[-5:EST]", Some(date(2020, 1, 1))),
            ("20200101003000[+12:NZST]", Some(date(2020, 1, 1))),
            ("20200101000000.000[-3.5:NST]", Some(date(2020, 1, 1))),
            ("  20240229  ", Some(date(2024, 2, 29))),
            ("20230229", None),
            ("2020011", None),
            ("2020-01-01", None),
            ("", None),
            ("2020010é", None),
        ] {
            assert_eq!(ofx_date(text), want, "{text:?}");
        }
    }

    #[test]
    fn amounts_as_ofx_writes_them() {
        for (text, want) in [
            ("-34.51", Some(dec(-3451, 2))),
            ("0.01", Some(dec(1, 2))),
            ("+5", Some(dec(5, 0))),
            ("-12,34", Some(dec(-1234, 2))),
            (" -25.00 ", Some(dec(-2500, 2))),
            ("- 3.5", Some(dec(-35, 1))),
            (".5", Some(dec(5, 1))),
            ("12.", Some(dec(12, 0))),
            ("1,234.56", None),
            ("12.3.4", None),
            ("$12.00", None),
            ("12.00-", None),
            ("-", None),
            ("", None),
            ("abc", None),
            ("1234567890123456789012345678901", None),
        ] {
            assert_eq!(ofx_amount(text), want, "{text:?}");
        }
    }

    #[test]
    fn sign_disagreeing_with_trntype_is_kept_and_flagged() {
        for (trntype, amount, want_units, warned) in [
            ("DEBIT", "12.00", 1200, true),
            ("DEBIT", "-12.00", -1200, false),
            ("CREDIT", "-3.00", -300, true),
            ("CREDIT", "3.00", 300, false),
            ("debit", "1", 1, true),
            ("DEBIT", "0.00", 0, false),
            ("POS", "5.00", 500, false),
            ("CHECK", "-5.00", -500, false),
        ] {
            let parsed = parse(&sgml(&format!(
                "<STMTTRN><TRNTYPE>{trntype}<DTPOSTED>20240101<TRNAMT>{amount}</STMTTRN>"
            )))
            .unwrap();
            let r = parsed.rows[0].clone().unwrap();
            assert_eq!(r.amount.units, want_units, "{trntype} {amount}");
            assert_eq!(
                parsed.warnings.len(),
                usize::from(warned),
                "{trntype} {amount}"
            );
            if warned {
                assert_eq!(parsed.warnings[0].row, Some(1));
                assert!(parsed.warnings[0].message.contains("sign is kept"));
            }
        }
    }

    #[test]
    fn unreadable_fields_reject_the_row_only() {
        let parsed = parse(&sgml(
            "<STMTTRN><DTPOSTED>20240101<TRNAMT>-1<FITID>OK1</STMTTRN>\
             <STMTTRN><DTPOSTED>20240101<FITID>NOAMT</STMTTRN>\
             <STMTTRN><DTPOSTED>20240101<TRNAMT>1,234.00<FITID>BADAMT</STMTTRN>\
             <STMTTRN><TRNAMT>1<FITID>NODATE</STMTTRN>\
             <STMTTRN><DTPOSTED>2024-01-01<TRNAMT>1<FITID>BADDATE</STMTTRN>\
             <STMTTRN><DTPOSTED>20240101<TRNAMT>2<DTAVAIL>soon<FITID>OK2</STMTTRN>",
        ))
        .unwrap();
        let rejected = |row: u32, field: &str, reason: &str| {
            Err(Rejected {
                row,
                field: field.into(),
                reason: reason.into(),
            })
        };
        assert_eq!(parsed.rows.len(), 6);
        assert_eq!(
            parsed.rows[0].as_ref().unwrap().external_id.as_deref(),
            Some("OK1")
        );
        assert_eq!(
            parsed.rows[1],
            rejected(2, "amount", "the transaction has no TRNAMT")
        );
        assert_eq!(
            parsed.rows[2],
            rejected(3, "amount", "TRNAMT \"1,234.00\" is not an amount")
        );
        assert_eq!(
            parsed.rows[3],
            rejected(4, "date", "the transaction has no DTPOSTED")
        );
        assert_eq!(
            parsed.rows[4],
            rejected(
                5,
                "date",
                "DTPOSTED \"2024-01-01\" does not start with a YYYYMMDD date"
            )
        );
        let last = parsed.rows[5].as_ref().unwrap();
        assert_eq!((last.row, last.value_date), (6, None));
        assert_eq!(
            parsed.warnings,
            vec![Warning {
                row: Some(6),
                message: "DTAVAIL \"soon\" is not a date; the row has no value date".into()
            }]
        );
    }

    #[test]
    fn merchant_description_check_number_and_dates() {
        for (body, merchant, description) in [
            ("<NAME>  Shop  <MEMO>  memo  ", Some("Shop"), "memo"),
            (
                "<PAYEE><NAME>Payee Inc<ADDR1>1 Road</PAYEE>",
                Some("Payee Inc"),
                "",
            ),
            ("<NAME>Direct<PAYEE><NAME>Payee</PAYEE>", Some("Direct"), ""),
            ("<CHECKNUM>1234<NAME>Joe", Some("Joe"), "Check 1234"),
            ("<CHECKNUM>1234<MEMO>rent", None, "rent; Check 1234"),
            ("<CHECKNUM>000<MEMO>rent", None, "rent"),
            ("<NAME>   <MEMO>", None, ""),
        ] {
            let r = one_row(&sgml(&format!(
                "<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240105<DTUSER>20240103\
                 <TRNAMT>-1{body}</STMTTRN>"
            )));
            assert_eq!(r.merchant.as_deref(), merchant, "{body}");
            assert_eq!(r.description, description, "{body}");
            // DTUSER (when the user initiated it) is not a value date: the row keeps
            // DTPOSTED and no value date.
            assert_eq!((r.date, r.value_date), (date(2024, 1, 5), None), "{body}");
        }
        // DTAVAIL, when the funds are available, is the value date.
        let r = one_row(&sgml(
            "<STMTTRN><DTPOSTED>20240105<DTAVAIL>20240108120000[-5:EST]<TRNAMT>1</STMTTRN>",
        ));
        assert_eq!(r.value_date, Some(date(2024, 1, 8)));
    }

    #[test]
    fn row_currency() {
        for (extra, want, warned) in [
            ("", Some("EUR"), false),
            (
                "<CURRENCY><CURRATE>1.1<CURSYM>usd</CURRENCY>",
                Some("USD"),
                false,
            ),
            // ORIGCURRENCY: the amount is already in CURDEF.
            (
                "<ORIGCURRENCY><CURRATE>1.1<CURSYM>USD</ORIGCURRENCY>",
                Some("EUR"),
                false,
            ),
            ("<CURRENCY><CURSYM>DOLLARS</CURRENCY>", Some("EUR"), true),
        ] {
            let parsed = parse(&sgml(&format!(
                "<STMTTRN><DTPOSTED>20240105<TRNAMT>1{extra}</STMTTRN>"
            )))
            .unwrap();
            let r = parsed.rows[0].clone().unwrap();
            assert_eq!(r.currency.as_deref(), want, "{extra}");
            assert_eq!(parsed.warnings.len(), usize::from(warned), "{extra}");
        }
    }

    #[test]
    fn sgml_and_xml_leniency() {
        let cases = [
            // Mixed closed and unclosed leaves, lower-case tags, dotted tag names.
            "<ofx><intu.bid>1<BANKMSGSRSV1><STMTTRNRS><STMTRS><CURDEF>EUR</CURDEF>\
             <BANKACCTFROM><ACCTID>42</BANKACCTFROM><BANKTRANLIST><stmttrn>\
             <trntype>DEBIT</trntype><DTPOSTED>20240101<INTU.XTRA>y<TRNAMT>-1</TRNAMT>\
             <FITID>F</stmttrn></BANKTRANLIST></STMTRS></STMTTRNRS></BANKMSGSRSV1></ofx>",
            // An empty SGML leaf followed by the next tag; comments and a DOCTYPE.
            "<!DOCTYPE OFX><!-- c --><OFX><BANKMSGSRSV1><STMTTRNRS><STMTRS><CURDEF>EUR\
             <BANKACCTFROM><ACCTID>42</BANKACCTFROM><BANKTRANLIST><STMTTRN><MEMO>\n\
             <TRNTYPE>DEBIT<DTPOSTED>20240101<TRNAMT>-1<FITID>F</STMTTRN></BANKTRANLIST>\
             </STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>",
            // Empty and self-closing XML elements, a BOM and attributes.
            "\u{feff}<?xml version=\"1.0\"?>\r\n<?OFX OFXHEADER=\"200\"?>\r\n<OFX>\
             <BANKMSGSRSV1><STMTTRNRS><STMTRS><CURDEF>EUR</CURDEF><BANKACCTFROM>\
             <ACCTID>42</ACCTID></BANKACCTFROM><BANKTRANLIST a=\"1\"><STMTTRN>\
             <TRNTYPE>DEBIT</TRNTYPE><DTPOSTED>20240101</DTPOSTED><TRNAMT>-1</TRNAMT>\
             <FITID>F</FITID><NAME></NAME><MEMO/></STMTTRN></BANKTRANLIST></STMTRS>\
             </STMTTRNRS></BANKMSGSRSV1></OFX>",
            // A </STMTTRN> left to the end of the list, and stray end tags.
            "<OFX><BANKMSGSRSV1><STMTTRNRS><STMTRS><CURDEF>EUR<BANKACCTFROM><ACCTID>42\
             </BANKACCTFROM></NOPE><BANKTRANLIST><STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20240101\
             <TRNAMT>-1<FITID>F</FITID></FITID></BANKTRANLIST></STMTRS></STMTTRNRS>\
             </BANKMSGSRSV1></OFX>",
        ];
        for text in cases {
            let parsed = parse(text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(parsed.statements, vec![statement("42", "EUR")], "{text}");
            assert_eq!(
                ok_rows(&parsed),
                vec![row((
                    1,
                    date(2024, 1, 1),
                    dec(-1, 0),
                    Some("EUR"),
                    None,
                    "",
                    Some("F"),
                    0
                ))],
                "{text}"
            );
            assert_eq!(parsed.warnings, vec![], "{text}");
        }
        // Two transactions without any </STMTTRN>: they do not nest.
        let parsed = parse(&sgml(
            "<STMTTRN><DTPOSTED>20240101<TRNAMT>-1<FITID>A\n<STMTTRN><DTPOSTED>20240102\
             <TRNAMT>-2<FITID>B",
        ))
        .unwrap();
        let ids: Vec<_> = ok_rows(&parsed)
            .into_iter()
            .map(|r| (r.row, r.external_id))
            .collect();
        assert_eq!(ids, vec![(1, Some("A".into())), (2, Some("B".into()))]);
        // Missing ACCTTYPE, BANKID and CURDEF (actualbudget #5153): lenient.
        let parsed = parse(
            "<OFX><CREDITCARDMSGSRSV1><CCSTMTTRNRS><CCSTMTRS><BANKTRANLIST><STMTTRN>\
             <DTPOSTED>20240101<TRNAMT>-1</STMTTRN></BANKTRANLIST></CCSTMTRS></CCSTMTTRNRS>\
             </CREDITCARDMSGSRSV1></OFX>",
        )
        .unwrap();
        assert_eq!(parsed.statements, vec![StatementInfo::default()]);
        assert_eq!(parsed.rows[0].as_ref().unwrap().currency, None);
    }

    #[test]
    fn pending_and_corrections_are_flagged() {
        let text = sgml(
            "<STMTTRN><DTPOSTED>20240101<TRNAMT>-1<FITID>N<CORRECTFITID>O\
             <CORRECTACTION>REPLACE</STMTTRN>",
        )
        .replace(
            "</BANKTRANLIST>",
            "</BANKTRANLIST><BANKTRANLISTP><STMTTRNP><TRNAMT>-9</STMTTRNP></BANKTRANLISTP>",
        );
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.rows.len(), 1);
        let messages: Vec<_> = parsed
            .warnings
            .iter()
            .map(|w| (w.row, w.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            vec![
                (
                    Some(1),
                    "the bank marks this row as a correction (REPLACE of FITID O); check the \
                     corrected transaction by hand"
                ),
                (
                    None,
                    "1 pending transaction(s) (STMTTRNP) skipped: only posted transactions are \
                     imported"
                ),
            ]
        );
    }

    #[test]
    fn hostile_nesting_is_refused_without_overflow() {
        let deep: String = (0..100_000).map(|i| format!("<A{i}>")).collect();
        assert_eq!(
            parse(&format!("<OFX>{deep}")),
            Err(FormatError(
                "the file nests elements more than 100 deep; not an OFX file".into()
            ))
        );
        // The same name repeated does not nest (no OFX aggregate contains itself).
        assert!(parse(&format!("<OFX>{}", "<A>".repeat(100_000))).is_err());
        // Many siblings are fine.
        let text = sgml(&"<STMTTRN><DTPOSTED>20240101<TRNAMT>1</STMTTRN>".repeat(2000));
        assert_eq!(parse(&text).unwrap().rows.len(), 2000);
    }

    #[test]
    fn tokens() {
        use Token::*;
        let s = |x: &str| x.to_string();
        assert_eq!(
            tokenize("<A.B>x &amp; y<![CDATA[&amp;]]></A.B><C/><D x='1'><?pi?><!--c-->< z<E"),
            vec![
                Start(s("A.B")),
                Text(s("x & y")),
                CData(s("&amp;")),
                End(s("A.B")),
                Start(s("C")),
                End(s("C")),
                Start(s("D")),
                Text(s("< z")),
            ]
        );
        assert_eq!(
            tokenize("<A<B>x"),
            vec![Start(s("A")), Start(s("B")), Text(s("x"))]
        );
        assert_eq!(
            tokenize("<A>x<![CDATA[open"),
            vec![Start(s("A")), Text(s("x")), CData(s("open"))]
        );
    }

    #[test]
    fn declared_charsets() {
        for (head, want) in [
            (
                "OFXHEADER:100\nENCODING:USASCII\nCHARSET:1252\n<OFX>",
                Some("windows-1252"),
            ),
            (
                "OFXHEADER:100\r\nENCODING:USASCII\r\nCHARSET:ISO-8859-1\r\n",
                Some("windows-1252"),
            ),
            (
                "OFXHEADER:100\nENCODING:USASCII\nCHARSET:8859-1\n",
                Some("windows-1252"),
            ),
            (
                "OFXHEADER:100\nENCODING:USASCII\nCHARSET:1250\n",
                Some("windows-1250"),
            ),
            (
                "OFXHEADER:100\nENCODING:UTF-8\nCHARSET:NONE\n",
                Some("utf-8"),
            ),
            (
                "OFXHEADER:100\nENCODING:UTF-8\nCHARSET:1252\n",
                Some("utf-8"),
            ),
            (
                "\n\nOFXHEADER: 100\nENCODING : USASCII\nCHARSET : iso-8859-15\n",
                Some("iso-8859-15"),
            ),
            (
                "OFXHEADER:100 DATA:OFXSGML ENCODING:USASCII CHARSET:1252 <OFX>",
                Some("windows-1252"),
            ),
            ("OFXHEADER:100\nENCODING:USASCII\nCHARSET:NONE\n", None),
            (
                "OFXHEADER:100\nENCODING:USASCII\nCHARSET:\nCOMPRESSION:NONE\n",
                None,
            ),
            ("OFXHEADER:100\nCHARSET:KLINGON\n", None),
            ("OFXHEADER:100\nDATA:OFXSGML\n<OFX><MEMO>CHARSET:1252", None),
            (
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><?OFX OFXHEADER=\"200\"?>",
                Some("utf-8"),
            ),
            (
                "<?xml version='1.0' encoding='ISO-8859-1' standalone='no'?>",
                Some("windows-1252"),
            ),
            (
                "\u{feff}<?xml version=\"1.0\" encoding=\"us-ascii\"?>",
                Some("windows-1252"),
            ),
            ("<?xml version=\"1.0\"?><?OFX OFXHEADER=\"200\"?>", None),
            ("<OFX>", None),
            ("", None),
        ] {
            let got = declared_charset(head.as_bytes());
            assert_eq!(got.as_deref(), want, "{head:?}");
            if let Some(label) = got {
                assert!(encoding_rs::Encoding::for_label(label.as_bytes()).is_some());
            }
        }
        assert_eq!(declared_charset(&[0xff, 0xfe, 0, 0x3c]), None);
    }

    #[test]
    fn sniffing() {
        for (head, want) in [
            ("OFXHEADER:100\nDATA:OFXSGML\n", true),
            ("\r\n\r\nOFXHEADER:100\r\n", true),
            ("\u{feff}OFXHEADER : 100", true),
            (
                "<?xml version=\"1.0\"?>\n<?OFX OFXHEADER=\"200\" VERSION=\"211\"?>",
                true,
            ),
            ("<?xml version=\"1.0\"?>\n<ofx>\n", true),
            ("<OFX>\n<SIGNONMSGSRSV1>", true),
            ("Date,Description,OFXHEADER\n", false),
            (
                "<?xml version=\"1.0\"?><Document xmlns=\"urn:iso:std:iso:20022\">",
                false,
            ),
            (":20:STARTUMS\n:25:DE00\n", false),
            ("!Type:Bank\nD1/2/24\n", false),
            ("", false),
        ] {
            assert_eq!(sniff(head), want, "{head:?}");
        }
        // Only the first KiB counts, and cutting it never splits a character.
        let late = format!("a{}<OFX>", "é".repeat(600));
        assert!(!sniff(&late));
    }
}
