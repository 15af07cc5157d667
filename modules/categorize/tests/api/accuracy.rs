//! How well the pipeline's steps categorise the hand-labelled set in tests/data/ (see its
//! README): the sandbox catalogue as it is, and every fixture of ../shared/fixtures/imports/
//! read by the imports crate's own parsers. Pure: `similarity::History` and
//! `rules::CompiledRule` need no database.
//!
//! Printed as a table (`--nocapture`); the assertions are sanity floors only. The LLM step
//! is left out: the stand-in answers by keyword, which measures nothing.

use std::collections::HashMap;

use categorize::{
    rules::{Actions, Candidate, CompiledRule, Conditions, Field, Operator, Sign},
    similarity::{Example, ExampleSource, History},
};
use chrono::NaiveDate;
use imports::formats::{self, Format, Parsed, camt, decode, mt940, ofx, qif};
use uuid::Uuid;

use crate::{all, any, nothing, sign, text};

/// The approval threshold of a tenant that set none.
const THRESHOLD: f64 = categorize::DEFAULT_THRESHOLD;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/imports/"
);

/// One labelled transaction.
#[derive(Debug, Clone)]
struct Row {
    /// `sandbox:<line>` or `<file>#<position>`.
    origin: String,
    merchant: Option<String>,
    description: String,
    /// Minor units, signed (two decimals assumed).
    amount: i64,
    category: Uuid,
}

/// The tenant's default categories by their own name, and each one's top-level parent.
struct Categories {
    by_name: HashMap<String, Uuid>,
    names: HashMap<Uuid, String>,
    top: HashMap<Uuid, Uuid>,
}

impl Categories {
    fn new() -> Categories {
        let mut by_name = HashMap::new();
        let mut names = HashMap::new();
        let mut top = HashMap::new();
        let mut n = 0u128;
        let mut next = || {
            n += 1;
            Uuid::from_u128(n)
        };
        for (parent, _, children) in ledger::domain::DEFAULT_CATEGORIES {
            let p = next();
            by_name.insert(parent.to_string(), p);
            names.insert(p, parent.to_string());
            top.insert(p, p);
            for child in *children {
                let c = next();
                assert!(
                    by_name.insert(child.to_string(), c).is_none(),
                    "{child} twice"
                );
                names.insert(c, child.to_string());
                top.insert(c, p);
            }
        }
        Categories {
            by_name,
            names,
            top,
        }
    }

    fn id(&self, name: &str) -> Uuid {
        *self
            .by_name
            .get(name)
            .unwrap_or_else(|| panic!("the label {name:?} is no default category"))
    }
}

/// RFC 4180 records: quoted fields may hold commas and doubled quotes.
fn records(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        fields.push(field);
        out.push(fields);
    }
    out
}

fn sandbox(categories: &Categories) -> Vec<Row> {
    let text = std::fs::read_to_string(format!("{DATA}sandbox_merchants.csv")).unwrap();
    let records = records(&text);
    assert_eq!(
        records[0],
        ["merchant", "description", "amount", "category"]
    );
    let rows: Vec<Row> = records[1..]
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r.len(), 4, "sandbox line {}: {r:?}", i + 2);
            Row {
                origin: format!("sandbox:{}", i + 2),
                merchant: Some(r[0].clone()).filter(|m| !m.is_empty()),
                description: r[1].clone(),
                amount: r[2].parse().unwrap(),
                category: categories.id(&r[3]),
            }
        })
        .collect();
    assert_eq!(rows.len(), 263, "the README's count");
    rows
}

/// A fixture read as the import pipeline reads it: its format, its charset, its parser.
fn parse(bytes: &[u8]) -> Parsed {
    let format = imports::pipeline::detect(bytes).expect("a format Balance reads");
    let head = &bytes[..bytes.len().min(1024)];
    let declared = match format {
        Format::Ofx => ofx::declared_charset(head),
        Format::Camt053 => camt::declared_charset(head),
        _ => None,
    };
    let text = decode::decode(bytes, declared.as_deref(), None)
        .unwrap()
        .text;
    match format {
        Format::Csv => formats::csv::parse(&text, None).unwrap().0,
        Format::Ofx => ofx::parse(&text).unwrap(),
        Format::Camt053 => camt::parse(&text).unwrap(),
        Format::Mt940 => mt940::parse(&text).unwrap(),
        Format::Qif => qif::parse(&text).unwrap(),
    }
}

/// The fixture rows, each checked against its label's snippet; `None` when the fixtures'
/// folder is absent.
fn fixtures(categories: &Categories) -> Option<Vec<Row>> {
    if !std::path::Path::new(FIXTURES).is_dir() {
        println!(
            "accuracy: skipped the 70 fixture rows: {FIXTURES} is absent; measuring the \
             sandbox rows only"
        );
        return None;
    }
    let text = std::fs::read_to_string(format!("{DATA}fixture_labels.csv")).unwrap();
    let records = records(&text);
    assert_eq!(records[0], ["file", "row", "snippet", "category"]);
    let mut parsed: HashMap<String, Parsed> = HashMap::new();
    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    for r in &records[1..] {
        let (file, position, snippet) = (&r[0], r[1].parse::<usize>().unwrap(), &r[2]);
        let p = parsed
            .entry(file.clone())
            .or_insert_with(|| parse(&std::fs::read(format!("{FIXTURES}{file}")).unwrap()));
        let origin = format!("{file}#{position}");
        let row = match p.rows.get(position - 1) {
            Some(Ok(row)) => row,
            Some(Err(rejected)) => {
                mismatches.push(format!("{origin}: the parser rejects it: {rejected:?}"));
                continue;
            }
            None => {
                mismatches.push(format!(
                    "{origin}: the parser returns {} rows",
                    p.rows.len()
                ));
                continue;
            }
        };
        let merchant = row.merchant.clone().filter(|m| !m.trim().is_empty());
        let needle = snippet.to_lowercase();
        let found = merchant
            .iter()
            .chain(std::iter::once(&row.description))
            .any(|t| t.to_lowercase().contains(&needle));
        if !found {
            mismatches.push(format!(
                "{origin}: {snippet:?} is in neither merchant {merchant:?} nor description {:?}",
                row.description
            ));
        }
        let amount = if row.amount.scale <= 2 {
            row.amount.units * 10i128.pow(2 - row.amount.scale)
        } else {
            row.amount.units / 10i128.pow(row.amount.scale - 2)
        };
        rows.push(Row {
            origin,
            merchant,
            description: row.description.clone(),
            amount: i64::try_from(amount).unwrap(),
            category: categories.id(&r[3]),
        });
    }
    // Every labelled file is labelled whole.
    for (file, p) in &parsed {
        let labelled = records[1..].iter().filter(|r| &r[0] == file).count();
        if labelled != p.rows.len() {
            mismatches.push(format!(
                "{file}: {labelled} labels for {} parsed rows",
                p.rows.len()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "the labels and the parsers disagree:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(rows.len(), 70, "the README's count");
    Some(rows)
}

/// A handful of rules a small business would write, as data: (name, conditions, category).
fn rule_set(c: &Categories) -> Vec<CompiledRule> {
    use Field::{Description as D, Merchant as M};
    use Operator::{Contains, Regex, StartsWith};
    let either = |pattern: &str| any(vec![text(M, Regex, pattern), text(D, Regex, pattern)]);
    let defs: Vec<(&str, Conditions, Actions)> = vec![
        // Fees first: "fee for transfer" is a fee, not a transfer.
        (
            "Bank fees",
            all(vec![text(
                D,
                Regex,
                r"SERVICE FEE|TRANSACTION FEE|WIRE TRANSFER FEE|RETURNED CHECK FEE|fee for transfer|Kontoführungsentgelt|Entgelt für Auslandsüberweisung|Frais de tenue de compte",
            )]),
            cat(c, "Bank fees"),
        ),
        (
            "Cloud hosting",
            any(vec![
                text(M, Contains, "aws"),
                text(M, Contains, "digitalocean"),
                text(M, Contains, "hetzner"),
            ]),
            cat(c, "Hosting"),
        ),
        (
            "SaaS",
            any(vec![
                text(M, Contains, "github"),
                text(M, StartsWith, "Google *Workspace"),
                text(M, Contains, "slack"),
                text(M, Contains, "adobe"),
                text(M, Contains, "spotify"),
            ]),
            cat(c, "Subscriptions"),
        ),
        (
            "Ads",
            either(r"GOOGLE \*ADS|FACEBK|LinkedIn Ads"),
            cat(c, "Advertising"),
        ),
        (
            "Uber trips",
            either(r"UBER \*TRIP"),
            cat(c, "Local transport"),
        ),
        ("Uber Eats", either(r"UBER \*EATS"), cat(c, "Meals")),
        (
            "City transport",
            either(r"\bTFL\b|\bBVG\b"),
            cat(c, "Local transport"),
        ),
        (
            "Airlines",
            either(r"AIR LINES|\bDELTA AIR\b|AIRWAYS|LUFTHANSA|AIRPLANES"),
            cat(c, "Flights"),
        ),
        (
            "VAT",
            all(vec![text(
                D,
                Regex,
                r"\bVAT\b|Umsatzsteuer|\bTVA\b|Omzetbelasting",
            )]),
            cat(c, "VAT"),
        ),
        (
            "Profit taxes",
            all(vec![text(
                D,
                Regex,
                r"CORPORATION TAX|Körperschaftsteuer|estimated tax",
            )]),
            cat(c, "Income tax"),
        ),
        (
            "Wage taxes",
            all(vec![text(D, Regex, r"\bPAYE\b|Lohnsteuer")]),
            cat(c, "Payroll"),
        ),
        (
            "Payouts",
            all(vec![
                text(D, Regex, r"STRIPE|SHOPIFY PAYMENTS PAYOUT|SQUARE INC"),
                sign(Sign::Positive),
            ]),
            cat(c, "Sales"),
        ),
        (
            "Interest",
            all(vec![
                text(
                    D,
                    Regex,
                    r"INTEREST PAYMENT|Habenzinsen|Rente tegoed|DIVIDEND EARNED",
                ),
                sign(Sign::Positive),
            ]),
            cat(c, "Interest"),
        ),
        (
            "Office rent",
            either(r"\bMiete\b|Huur kantoor|WEWORK|Nebenkostenabrechnung"),
            cat(c, "Rent"),
        ),
        (
            "Own accounts",
            all(vec![text(
                D,
                Regex,
                r"TRANSFER (TO|FROM) SAV|EPAYMENT|AUTOPAY|PAYMENT RECEIVED|Top-Up by|ATM WITHDRAWAL|Umbuchung",
            )]),
            Actions {
                transfer: Some(true),
                ..nothing()
            },
        ),
        (
            "Insurance",
            either(r"INSURANCE|Versicherung|Betriebshaftpflicht|\bAXA\b"),
            cat(c, "Insurance"),
        ),
        (
            "Cafés",
            either(r"COFFEE|PRET A MANGER|B(ä|a)ckerei|\bCAF(E|É)\b|DELIVEROO|RESTAURANT"),
            cat(c, "Meals"),
        ),
        ("Hotels", either(r"MARRIOTT|PREMIER INN"), cat(c, "Hotels")),
    ];
    defs.into_iter()
        .enumerate()
        .map(|(i, (name, conditions, actions))| {
            CompiledRule::compile(
                Uuid::from_u128(1_000 + i as u128),
                name,
                &conditions,
                &actions,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect()
}

fn cat(c: &Categories, name: &str) -> Actions {
    crate::file_under(c.id(name))
}

/// The first rule that decides a row, and its category (a transfer is the Transfers
/// category, as the pipeline files it).
fn by_rules(rules: &[CompiledRule], c: &Categories, row: &Row) -> Option<(usize, Uuid)> {
    let candidate = Candidate {
        merchant: row.merchant.as_deref(),
        description: &row.description,
        amount: row.amount,
        account_id: Uuid::nil(),
        currency: "EUR",
        date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
    };
    rules.iter().enumerate().find_map(|(i, rule)| {
        rule.matches(&candidate)?;
        let a = rule.actions();
        let category = match (a.category_id, a.transfer) {
            (Some(category), _) => category,
            (None, Some(true)) => c.id("Transfers"),
            _ => return None,
        };
        Some((i, category))
    })
}

/// Every row as a person's example, keyed by its position.
fn history(rows: &[Row]) -> History {
    History::new(
        rows.iter()
            .enumerate()
            .map(|(i, r)| Example {
                transaction_id: Uuid::from_u128(i as u128 + 1),
                merchant: r.merchant.clone(),
                description: r.description.clone(),
                category_id: r.category,
                source: ExampleSource::Person,
            })
            .collect(),
    )
}

/// Counts of one way of deciding.
#[derive(Default, Clone, Copy)]
struct Tally {
    rows: usize,
    decided: usize,
    right: usize,
    /// Right at the top level (the same parent category).
    right_top: usize,
    /// Suggestions below the threshold (they would wait in approvals).
    doubtful: usize,
    doubtful_right: usize,
}

impl Tally {
    fn count(&mut self, c: &Categories, row: &Row, got: Uuid, doubtful: bool) {
        self.decided += 1;
        if got == row.category {
            self.right += 1;
        }
        if c.top[&got] == c.top[&row.category] {
            self.right_top += 1;
        }
        if doubtful {
            self.doubtful += 1;
            if got == row.category {
                self.doubtful_right += 1;
            }
        }
    }

    fn coverage(&self) -> f64 {
        share(self.decided, self.rows)
    }

    fn accuracy(&self) -> f64 {
        share(self.right, self.decided)
    }

    fn line(&self, name: &str) -> String {
        format!(
            "| {name:<40} | {:>4} | {:>7} | {:>6.1}% | {:>6.1}% | {:>6.1}% | {:>8.1}% | {:>11} |",
            self.rows,
            self.decided,
            100.0 * self.coverage(),
            100.0 * self.accuracy(),
            100.0 * share(self.right_top, self.decided),
            100.0 * share(self.doubtful, self.rows),
            if self.doubtful == 0 {
                "—".to_string()
            } else {
                format!("{:.1}%", 100.0 * share(self.doubtful_right, self.doubtful))
            },
        )
    }
}

fn share(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

#[test]
fn the_labelled_set_through_rules_and_history() {
    let c = Categories::new();
    let mut rows = sandbox(&c);
    let sandbox_rows = rows.len();
    if let Some(fixture_rows) = fixtures(&c) {
        rows.extend(fixture_rows);
    }
    let history = history(&rows);
    let rules = rule_set(&c);

    // (a) The history alone, leave-one-out: every other row a person's example.
    let mut similarity = Tally {
        rows: rows.len(),
        ..Tally::default()
    };
    let mut similarity_auto = Tally {
        rows: rows.len(),
        ..Tally::default()
    };
    let mut wrong_similarity = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let me = Uuid::from_u128(i as u128 + 1);
        if let Some(s) = history.suggest(row.merchant.as_deref(), &row.description, Some(me)) {
            let doubtful = s.confidence < THRESHOLD;
            similarity.count(&c, row, s.category_id, doubtful);
            if !doubtful {
                similarity_auto.count(&c, row, s.category_id, false);
                if s.category_id != row.category {
                    wrong_similarity.push(format!(
                        "  {} {:?} / {:?}: {} for {} ({:.2})",
                        row.origin,
                        row.merchant,
                        row.description,
                        c.names[&s.category_id],
                        c.names[&row.category],
                        s.confidence
                    ));
                }
            }
        }
    }

    // (b) The rules alone.
    let mut by_rule = Tally {
        rows: rows.len(),
        ..Tally::default()
    };
    let mut wrong_rules = Vec::new();
    let mut rule_hits = vec![0usize; rules.len()];
    for row in &rows {
        if let Some((i, got)) = by_rules(&rules, &c, row) {
            rule_hits[i] += 1;
            by_rule.count(&c, row, got, false);
            if got != row.category {
                wrong_rules.push(format!(
                    "  {} {:?} / {:?}: rule '{}' says {}, the label {}",
                    row.origin,
                    row.merchant,
                    row.description,
                    rules[i].name,
                    c.names[&got],
                    c.names[&row.category]
                ));
            }
        }
    }

    // (c) The pipeline's order: the rules, then the history on what they leave.
    let mut step_rule = Tally {
        rows: rows.len(),
        ..Tally::default()
    };
    let mut step_similarity = Tally::default();
    let mut overall = Tally {
        rows: rows.len(),
        ..Tally::default()
    };
    let mut waiting = 0;
    let mut left = 0;
    for (i, row) in rows.iter().enumerate() {
        if let Some((_, got)) = by_rules(&rules, &c, row) {
            step_rule.count(&c, row, got, false);
            overall.count(&c, row, got, false);
            continue;
        }
        step_similarity.rows += 1;
        let me = Uuid::from_u128(i as u128 + 1);
        match history.suggest(row.merchant.as_deref(), &row.description, Some(me)) {
            Some(s) if s.confidence >= THRESHOLD => {
                step_similarity.count(&c, row, s.category_id, false);
                overall.count(&c, row, s.category_id, false);
            }
            Some(s) => {
                // Waits for a person: counted as a suggestion, not as decided.
                step_similarity.doubtful += 1;
                if s.category_id == row.category {
                    step_similarity.doubtful_right += 1;
                }
                waiting += 1;
            }
            None => left += 1,
        }
    }
    overall.doubtful = waiting;
    overall.doubtful_right = step_similarity.doubtful_right;

    println!();
    println!(
        "Categorization accuracy over {} labelled rows ({} sandbox, {} fixture); \
         threshold {THRESHOLD}; history = every other labelled row as a person's example",
        rows.len(),
        sandbox_rows,
        rows.len() - sandbox_rows
    );
    println!(
        "| {:<40} | {:>4} | {:>7} | {:>7} | {:>7} | {:>7} | {:>9} | {:>10} |",
        "step", "rows", "decided", "cover", "exact", "parent", "approvals", "appr. right"
    );
    println!("|{}|", "-".repeat(119));
    println!(
        "{}",
        similarity.line("(a) similarity LOO, every suggestion")
    );
    println!(
        "{}",
        similarity_auto.line("(a) similarity LOO, >= threshold only")
    );
    println!(
        "{}",
        by_rule.line(&format!("(b) {} rules alone", rules.len()))
    );
    println!("{}", step_rule.line("(c) 1. rules"));
    println!("{}", step_similarity.line("(c) 2. similarity on the rest"));
    println!("{}", overall.line("(c) rules, then similarity (decided)"));
    println!(
        "(c): {} decided by rules, {} by similarity, {} wait in approvals, {} left undecided",
        step_rule.decided, step_similarity.decided, waiting, left
    );
    println!(
        "rule hits: {}",
        rules
            .iter()
            .zip(&rule_hits)
            .map(|(r, n)| format!("{} {n}", r.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !wrong_rules.is_empty() {
        println!(
            "rule decisions against the label:\n{}",
            wrong_rules.join("\n")
        );
    }
    println!(
        "similarity decisions (>= threshold) against the label: {}",
        wrong_similarity.len()
    );
    for line in wrong_similarity.iter().take(40) {
        println!("{line}");
    }

    // Sanity floors, well below what the data gives.
    assert!(
        by_rule.accuracy() >= 0.9,
        "rules: {:.3}",
        by_rule.accuracy()
    );
    assert!(
        by_rule.coverage() >= 0.25,
        "rules cover {:.3}",
        by_rule.coverage()
    );
    assert!(
        similarity.accuracy() >= 0.5,
        "similarity: {:.3}",
        similarity.accuracy()
    );
    assert!(
        similarity.coverage() >= 0.5,
        "similarity covers {:.3}",
        similarity.coverage()
    );
    assert!(
        similarity_auto.accuracy() >= similarity.accuracy(),
        "confident suggestions are the better ones"
    );
    assert!(
        overall.accuracy() >= 0.75,
        "overall: {:.3}",
        overall.accuracy()
    );
    assert!(
        rule_hits.iter().all(|&n| n > 0),
        "every rule of the set decides a row: {rule_hits:?}"
    );
}
