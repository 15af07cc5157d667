//! The ledger's types that parse rather than validate: an IBAN that passed ISO 13616, an
//! account kind, a category kind, the default categories every tenant starts with.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use kernel::{Currency, FieldError};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An IBAN, normalised (upper case, no spaces) and checked: its country's length where the
/// registry lists it, and the ISO 7064 mod-97 check digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iban(String);

/// IBAN lengths by country (SWIFT's IBAN registry), for the countries Balance's users bank
/// in most; another country is checked by shape and check digits alone.
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AT", 20),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TR", 26),
    ("UA", 29),
];

impl Iban {
    /// Parses an IBAN as people write it (`DE89 3704 0044 0532 0130 00`).
    pub fn parse(field: &str, raw: &str) -> Result<Iban, FieldError> {
        let bad = |why: &str| FieldError::new(field, why.to_string());
        let iban: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        if !(15..=34).contains(&iban.len()) || !iban.is_ascii() {
            return Err(bad("is not an IBAN: 15 to 34 letters and digits"));
        }
        let (country, rest) = iban.split_at(2);
        if !country.bytes().all(|b| b.is_ascii_uppercase())
            || !rest[..2].bytes().all(|b| b.is_ascii_digit())
            || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(bad(
                "is not an IBAN: a country code, two check digits, then letters and digits",
            ));
        }
        if let Some((_, len)) = LENGTHS.iter().find(|(c, _)| *c == country)
            && iban.len() != *len
        {
            return Err(FieldError::new(
                field,
                format!("is not an IBAN: {country} IBANs have {len} characters"),
            ));
        }
        // Move the first four characters to the end, letters become 10..35, mod 97 == 1.
        let rearranged = iban[4..].bytes().chain(iban[..4].bytes());
        let mut remainder: u32 = 0;
        for b in rearranged {
            let value = if b.is_ascii_digit() {
                u32::from(b - b'0')
            } else {
                u32::from(b - b'A') + 10
            };
            remainder = if value >= 10 {
                (remainder * 100 + value) % 97
            } else {
                (remainder * 10 + value) % 97
            };
        }
        if remainder != 1 {
            return Err(bad("is not an IBAN: its check digits do not match"));
        }
        Ok(Iban(iban))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Checking,
    Savings,
    Credit,
    Cash,
    Loan,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Checking => "checking",
            AccountKind::Savings => "savings",
            AccountKind::Credit => "credit",
            AccountKind::Cash => "cash",
            AccountKind::Loan => "loan",
        }
    }

    /// The kind stored as `raw` (the table's check constraint admits no other).
    pub fn from_db(raw: &str) -> AccountKind {
        match raw {
            "savings" => AccountKind::Savings,
            "credit" => AccountKind::Credit,
            "cash" => AccountKind::Cash,
            "loan" => AccountKind::Loan,
            _ => AccountKind::Checking,
        }
    }
}

/// What a category counts: spending, income, or money moving between own accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum CategoryKind {
    Expense,
    Income,
    Transfer,
}

impl CategoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CategoryKind::Expense => "expense",
            CategoryKind::Income => "income",
            CategoryKind::Transfer => "transfer",
        }
    }

    pub fn from_db(raw: &str) -> CategoryKind {
        match raw {
            "income" => CategoryKind::Income,
            "transfer" => CategoryKind::Transfer,
            _ => CategoryKind::Expense,
        }
    }
}

/// The categories a new tenant starts with: a business set, two levels at most.
pub const DEFAULT_CATEGORIES: &[(&str, CategoryKind, &[&str])] = &[
    (
        "Revenue",
        CategoryKind::Income,
        &["Sales", "Services", "Interest"],
    ),
    ("Uncategorised income", CategoryKind::Income, &[]),
    (
        "Payroll",
        CategoryKind::Expense,
        &["Salaries", "Contractors", "Benefits"],
    ),
    ("Rent", CategoryKind::Expense, &[]),
    (
        "Software",
        CategoryKind::Expense,
        &["Subscriptions", "Hosting"],
    ),
    (
        "Travel",
        CategoryKind::Expense,
        &["Flights", "Hotels", "Local transport"],
    ),
    ("Meals", CategoryKind::Expense, &[]),
    ("Office", CategoryKind::Expense, &["Supplies"]),
    ("Marketing", CategoryKind::Expense, &["Advertising"]),
    ("Taxes", CategoryKind::Expense, &["VAT", "Income tax"]),
    ("Bank fees", CategoryKind::Expense, &[]),
    ("Utilities", CategoryKind::Expense, &[]),
    ("Insurance", CategoryKind::Expense, &[]),
    (
        "Professional services",
        CategoryKind::Expense,
        &["Legal", "Accounting"],
    ),
    ("Equipment", CategoryKind::Expense, &[]),
    ("Uncategorised expense", CategoryKind::Expense, &[]),
    ("Transfers", CategoryKind::Transfer, &[]),
];

/// An account, with balances read in O(1).
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub kind: AccountKind,
    pub currency: Currency,
    /// Minor units of the currency (cents), as every amount.
    pub opening_balance: i64,
    pub opening_date: NaiveDate,
    /// Normalised: upper case, no spaces.
    pub iban: Option<String>,
    pub institution: Option<String>,
    /// Opening balance plus posted transactions.
    pub balance: i64,
    /// `balance` plus pending transactions.
    pub pending_balance: i64,
    /// What the bank last said, when connected.
    pub reported_balance: Option<i64>,
    pub reported_at: Option<DateTime<Utc>>,
    /// Set when archived: kept with its transactions, hidden from pickers.
    pub archived_at: Option<DateTime<Utc>>,
    /// For `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One day's closing balances of an account.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct DayBalance {
    pub date: NaiveDate,
    pub balance: i64,
    pub pending_balance: i64,
}

/// A new account, parsed.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: kernel::DisplayName,
    pub kind: AccountKind,
    pub currency: Currency,
    pub opening_balance: i64,
    pub opening_date: NaiveDate,
    pub iban: Option<Iban>,
    pub institution: Option<kernel::DisplayName>,
}

/// Changes to an account; `None` leaves a field as it is (`Some(None)` clears it).
#[derive(Debug, Clone, Default)]
pub struct AccountChanges {
    pub name: Option<kernel::DisplayName>,
    pub iban: Option<Option<Iban>>,
    pub institution: Option<Option<kernel::DisplayName>>,
    pub archived: Option<bool>,
}

/// A category.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    pub kind: CategoryKind,
    /// The parent of a subcategory; `null` at the top level.
    pub parent_id: Option<Uuid>,
    pub archived_at: Option<DateTime<Utc>>,
    /// For `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

/// A new category, parsed.
#[derive(Debug, Clone)]
pub struct NewCategory {
    pub name: kernel::DisplayName,
    pub kind: CategoryKind,
    pub parent_id: Option<Uuid>,
}

/// Changes to a category.
#[derive(Debug, Clone, Default)]
pub struct CategoryChanges {
    pub name: Option<kernel::DisplayName>,
    pub archived: Option<bool>,
}

/// Whether the bank has booked a transaction yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TransactionStatus {
    Pending,
    Posted,
}

impl TransactionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Pending => "pending",
            TransactionStatus::Posted => "posted",
        }
    }

    pub fn from_db(raw: &str) -> TransactionStatus {
        if raw == "pending" {
            TransactionStatus::Pending
        } else {
            TransactionStatus::Posted
        }
    }
}

/// Where a transaction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TransactionSource {
    Manual,
    Import,
    Sync,
}

impl TransactionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionSource::Manual => "manual",
            TransactionSource::Import => "import",
            TransactionSource::Sync => "sync",
        }
    }

    pub fn from_db(raw: &str) -> TransactionSource {
        match raw {
            "import" => TransactionSource::Import,
            "sync" => TransactionSource::Sync,
            _ => TransactionSource::Manual,
        }
    }
}

/// A part of a transaction with its own category; the parts add up to its amount.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub category_id: Uuid,
    /// Minor units, the same sign as the transaction's amount.
    pub amount: i64,
    #[oai(validator(max_length = 500))]
    #[serde(default)]
    pub memo: Option<String>,
}

/// Why a transaction has its category: who decided, how sure, in words.
#[derive(Debug, Clone, PartialEq, Object, Serialize, Deserialize)]
pub struct Categorization {
    pub category_id: Option<Uuid>,
    /// `rule`, `similarity`, `llm`, `person` or `import`.
    pub source: String,
    /// 0 to 1.
    pub confidence: f64,
    pub reasoning: String,
    pub rule_id: Option<Uuid>,
    /// The earlier transactions a similarity decision was drawn from, most similar first.
    #[serde(default)]
    pub neighbours: Option<Vec<Neighbour>>,
    pub model: Option<String>,
    pub decided_at: DateTime<Utc>,
}

/// An earlier transaction a similarity decision was drawn from.
#[derive(Debug, Clone, PartialEq, Object, Serialize, Deserialize)]
pub struct Neighbour {
    pub transaction_id: Uuid,
    pub category_id: Uuid,
    /// 0 to 1: how alike the two are.
    pub similarity: f64,
}

/// The fields a person's edit locks: imports, syncs and rules never overwrite them.
pub const LOCKABLE: &[&str] = &["category", "merchant", "notes", "tags", "date"];

/// A transaction.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Transaction {
    pub id: Uuid,
    pub account_id: Uuid,
    /// The booking date.
    pub date: NaiveDate,
    pub value_date: Option<NaiveDate>,
    /// Minor units; expenses are negative.
    pub amount: i64,
    /// The account's currency.
    pub currency: Currency,
    pub merchant: Option<String>,
    pub description: String,
    pub status: TransactionStatus,
    /// `null` when it has splits, or is not categorised yet.
    pub category_id: Option<Uuid>,
    pub splits: Vec<Split>,
    pub categorization: Option<Categorization>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub source: TransactionSource,
    pub external_id: Option<String>,
    pub import_id: Option<Uuid>,
    /// Shared by the two legs of a transfer.
    pub transfer_id: Option<Uuid>,
    /// Fields a person edited (`category`, `merchant`, `notes`, `tags`, `date`).
    pub locked_fields: Vec<String>,
    /// For `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new transaction, parsed (amount and splits checked against each other by the service,
/// which also knows the account's currency).
#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub account_id: Uuid,
    pub date: NaiveDate,
    pub value_date: Option<NaiveDate>,
    pub amount: i64,
    /// When given, it must be the account's.
    pub currency: Option<Currency>,
    pub merchant: Option<String>,
    pub description: String,
    pub status: TransactionStatus,
    pub category_id: Option<Uuid>,
    pub splits: Vec<Split>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub external_id: Option<String>,
}

/// Changes to a transaction; `None` leaves a field as it is (`Some(None)` clears it).
#[derive(Debug, Clone, Default)]
pub struct TransactionChanges {
    pub date: Option<NaiveDate>,
    pub amount: Option<i64>,
    pub merchant: Option<Option<String>>,
    pub description: Option<String>,
    pub status: Option<TransactionStatus>,
    pub category_id: Option<Option<Uuid>>,
    pub splits: Option<Vec<Split>>,
    pub notes: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
}

/// Money moved between two of the tenant's accounts.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub from_account_id: Uuid,
    pub to_account_id: Uuid,
    /// Positive minor units, leaving `from_account_id`.
    pub amount: i64,
    pub date: NaiveDate,
    pub description: String,
}

/// The two legs of a transfer.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Transfer {
    pub transfer_id: Uuid,
    /// The leg that leaves (negative amount).
    pub from: Transaction,
    /// The leg that arrives.
    pub to: Transaction,
}

/// What a transaction list asks for.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub account_id: Option<Uuid>,
    /// The transaction's category, or one of its splits'.
    pub category_id: Option<Uuid>,
    pub min_amount: Option<i64>,
    pub max_amount: Option<i64>,
    pub status: Option<TransactionStatus>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    pub source: Option<TransactionSource>,
    pub import_id: Option<Uuid>,
    /// Neither a category nor splits.
    pub uncategorized: bool,
    /// Transfer legs too (default).
    pub include_transfers: bool,
    /// Words that must all start a word of the merchant, description or notes.
    pub q: Option<String>,
}

impl TransactionFilter {
    /// A canonical text of the filter: a list cursor is bound to it.
    pub fn canonical(&self) -> String {
        format!("{self:?}")
    }
}

/// Who changes a transaction: a person's edit locks what it touches; an import, a sync or
/// a rule leaves locked fields alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editor {
    Person,
    Automation,
}

/// Tags as stored: trimmed, sorted, each once.
pub fn normalise_tags(tags: Vec<String>) -> Vec<String> {
    let mut tags: Vec<String> = tags.into_iter().map(|t| t.trim().to_string()).collect();
    tags.sort();
    tags.dedup();
    tags
}

/// A merchant as stored: trimmed, and none when blank.
pub fn normalise_merchant(merchant: Option<String>) -> Option<String> {
    merchant
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
}

/// The words a transaction is found by (INTEGRATIONS.md §5): lower case, accents folded,
/// split on anything that is not a letter or digit; words with digits (reference numbers)
/// and single letters are left out.
pub fn terms(texts: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for text in texts {
        for word in fold(text).split(|c: char| !c.is_alphanumeric()) {
            if word.chars().count() < 2 || word.chars().any(|c| c.is_numeric()) {
                continue;
            }
            let word = word.chars().take(64).collect::<String>();
            if !out.contains(&word) {
                out.push(word);
            }
        }
    }
    out
}

/// The dedup fingerprint of DESIGN.md §6, shared by imports and bank sync: SHA-256 over the
/// account, the booking date, the amount, the currency, the normalised text and the
/// ordinal of the row among identical tuples of the same file or sync page (so two
/// identical coffees on one day stay two rows, and the same file again adds nothing). A
/// provider's transaction id, when there is one, is kept beside it as `external_id` and
/// decides first (see [`Incoming`]). Documented with worked examples in docs/DEDUP.md.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of one row; `ordinal` counts identical tuples before it (from 0).
    pub fn of(
        account_id: Uuid,
        date: NaiveDate,
        amount: i64,
        currency: kernel::Currency,
        text: &str,
        ordinal: u32,
    ) -> Fingerprint {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(Fingerprint::tuple(account_id, date, amount, currency, text));
        hash.update(format!("|{ordinal}").as_bytes());
        Fingerprint(hash.finalize().into())
    }

    /// The text hashed before the ordinal: `v1|<account>|<date>|<amount>|<currency>|<text>`.
    pub fn tuple(
        account_id: Uuid,
        date: NaiveDate,
        amount: i64,
        currency: kernel::Currency,
        text: &str,
    ) -> String {
        format!(
            "v1|{account_id}|{date}|{amount}|{currency}|{}",
            fingerprint_text(text)
        )
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", &self.hex()[..16])
    }
}

/// The text a fingerprint hashes: folded (lower case, no accents), every run of anything
/// that is not a letter or digit made one space, trimmed. `"  Café  BERLIN; "` → `"cafe berlin"`.
pub fn fingerprint_text(text: &str) -> String {
    let folded = fold(text);
    let mut out = String::with_capacity(folded.len());
    for word in folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Numbers identical tuples of one file or sync page in their order: the first is 0, the
/// next identical one 1, … (the ordinal of [`Fingerprint::of`]).
#[derive(Debug, Default)]
pub struct Ordinals(std::collections::HashMap<String, u32>);

impl Ordinals {
    /// The fingerprint of the next row of the file.
    pub fn next(
        &mut self,
        account_id: Uuid,
        date: NaiveDate,
        amount: i64,
        currency: kernel::Currency,
        text: &str,
    ) -> Fingerprint {
        let tuple = Fingerprint::tuple(account_id, date, amount, currency, text);
        let seen = self.0.entry(tuple).or_insert(0);
        let ordinal = *seen;
        *seen += 1;
        Fingerprint::of(account_id, date, amount, currency, text, ordinal)
    }
}

/// A transaction arriving from a file or a bank, before dedup.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub date: NaiveDate,
    pub value_date: Option<NaiveDate>,
    /// Minor units of the account's currency.
    pub amount: i64,
    pub merchant: Option<String>,
    pub description: String,
    pub status: TransactionStatus,
    /// The provider's id, prefixed by its provider (`ofx:<FITID>`, `camt:<AcctSvcrRef>`,
    /// `plaid:<transaction_id>`): equal ids are one transaction; different ids of one
    /// provider are two, whatever the fingerprints say.
    pub external_id: Option<String>,
    pub fingerprint: Fingerprint,
}

/// Why an incoming row is a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The same provider id in the account.
    ProviderId,
    /// The same fingerprint, where the two have no ids of one provider to compare.
    Fingerprint,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::ProviderId => "provider_id",
            MatchedBy::Fingerprint => "fingerprint",
        }
    }

    pub fn from_db(s: &str) -> MatchedBy {
        if s == "provider_id" {
            MatchedBy::ProviderId
        } else {
            MatchedBy::Fingerprint
        }
    }
}

/// What became of an incoming row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Inserted(Uuid),
    /// Already in the account (deleted ones included): nothing written.
    Duplicate {
        of: Uuid,
        matched_by: MatchedBy,
    },
}

/// Lower case without accents, as terms and queries are compared.
pub fn fold(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    // Most bank text is ASCII, where decomposing changes nothing: the same answer, without
    // walking the normalisation tables (rules and the history fold every row they see).
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.nfd()
        .filter(|c| !('\u{0300}'..='\u{036F}').contains(c))
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of docs/DEDUP.md: if this fails, the document is wrong.
    #[test]
    fn fingerprints_match_the_worked_examples() {
        let account = Uuid::parse_str("0190a6f0-0000-7000-8000-000000000001").unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(
            Fingerprint::tuple(
                account,
                date,
                -350,
                eur,
                "Café Central CARD PAYMENT  Berlin"
            ),
            "v1|0190a6f0-0000-7000-8000-000000000001|2026-03-02|-350|EUR|cafe central card payment berlin"
        );
        let mut ordinals = Ordinals::default();
        let first = ordinals.next(
            account,
            date,
            -350,
            eur,
            "Café Central CARD PAYMENT  Berlin",
        );
        let second = ordinals.next(account, date, -350, eur, "CAFE CENTRAL card payment Berlin");
        assert_eq!(
            first.hex(),
            "229b0b41ead5db4aec68fd50c30d7a12817d164ed85d2ffa5aa3b929a2ab76f9"
        );
        assert_eq!(
            second.hex(),
            "65aa449e3250738ad0ad23572e7e2591ddf5d23c394ee554cc7759b7d64f8e3e",
            "the same tuple again in one file is the next ordinal"
        );
        let again = Ordinals::default().next(
            account,
            date,
            -350,
            eur,
            "Café Central, card payment, BERLIN",
        );
        assert_eq!(
            again, first,
            "the same row in another file is the same fingerprint"
        );
        assert_eq!(fingerprint_text("  Café  BERLIN; "), "cafe berlin");
    }

    #[test]
    fn ibans_are_normalised_and_checked() {
        let iban = Iban::parse("iban", " de89 3704 0044 0532 0130 00 ").unwrap();
        assert_eq!(iban.as_str(), "DE89370400440532013000");
        for ok in [
            "GB82 WEST 1234 5698 7654 32",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "BE68539007547034",
        ] {
            assert!(Iban::parse("iban", ok).is_ok(), "{ok}");
        }
        for bad in [
            "DE89 3704 0044 0532 0130 01", // check digits
            "DE89 3704 0044 0532 0130",    // German length
            "GB82-WEST-1234-5698-7654-3",  // length
            "1234567890123456",            // no country
            "DE8937040044053201300é",
            "",
        ] {
            let e = Iban::parse("iban", bad).unwrap_err();
            assert_eq!(e.field, "iban", "{bad}");
        }
    }

    #[test]
    fn terms_are_folded_words_without_numbers() {
        assert_eq!(
            terms(&["CARD PAYMENT Café-Müller REF123456", "Café crème, x"]),
            ["card", "payment", "cafe", "muller", "creme"]
        );
        assert_eq!(fold("ÉCOLE"), "ecole");
    }

    #[test]
    fn the_default_categories_have_two_levels_and_unique_names() {
        let mut names = std::collections::HashSet::new();
        for (name, _, children) in DEFAULT_CATEGORIES {
            assert!(names.insert(name.to_lowercase()), "{name}");
            let mut child_names = std::collections::HashSet::new();
            for child in *children {
                assert!(child_names.insert(child.to_lowercase()), "{child}");
            }
        }
        assert!(DEFAULT_CATEGORIES.len() >= 15);
    }
}
