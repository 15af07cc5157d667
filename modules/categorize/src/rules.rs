//! The tenant's rules, the first step of the pipeline: a definition as the API carries it
//! (`Conditions`, `Actions`), its validation, and `CompiledRule`, which tests a transaction
//! and says in words why it matched. Pure: no database, no clock, no async, so the HTTP
//! layer, the pipeline and a dry run all judge a rule the same way.
//!
//! A condition is flat (one object with every operand optional) because that reads well in
//! the spec and in generated clients; which operands an operator takes is checked here, and
//! every refusal names the field path of the request body. In the spec the types are named
//! `Rule…` (`RuleField`, `RuleConditions`, …): schema names share one namespace across the
//! modules, poem-openapi panics on two types of one name, and `Field` alone says nothing to
//! a generated client.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use ledger::domain::fold;
use poem_openapi::{Enum, Object};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// The most conditions one rule may have.
pub const MAX_CONDITIONS: usize = 20;
/// The longest text operand and renamed merchant, in characters.
pub const MAX_TEXT: usize = 200;
/// The fewest and most shares of a split.
pub const SPLIT_SHARES: std::ops::RangeInclusive<usize> = 2..=10;
/// The most tags one rule may add; the ledger's own limit per transaction.
pub const MAX_TAGS: usize = 20;
/// The longest tag, in characters; the ledger's own limit.
pub const MAX_TAG: usize = 50;

// A compiled pattern lives as long as its rule is kept, and many tenants' rules may be kept
// at once: these bound what one tenant's pattern may cost in memory. The regex crate never
// backtracks, so time is linear in the text whatever the pattern.
const REGEX_SIZE_LIMIT: usize = 64 * 1024;
const REGEX_DFA_SIZE_LIMIT: usize = 256 * 1024;

/// How the conditions combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Enum, Serialize, Deserialize)]
#[oai(rename = "RuleMatch", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// Every condition must hold.
    #[default]
    All,
    /// At least one condition must hold.
    Any,
}

/// What a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename = "RuleField", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The merchant (payee); a transaction without one matches no merchant condition.
    Merchant,
    /// The bank's description; may be empty.
    Description,
    /// The signed amount in minor units (expenses are negative).
    Amount,
    /// The account the transaction is in.
    Account,
    /// The transaction's currency (ISO 4217).
    Currency,
    /// The ISO weekday of the booking date, 1 (Monday) to 7 (Sunday).
    Weekday,
    /// The day of the month of the booking date, 1 to 31.
    DayOfMonth,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Merchant => "merchant",
            Field::Description => "description",
            Field::Amount => "amount",
            Field::Account => "account",
            Field::Currency => "currency",
            Field::Weekday => "weekday",
            Field::DayOfMonth => "day_of_month",
        }
    }

    /// The operators the field takes, for the message that refuses another one.
    fn operators(self) -> &'static str {
        match self {
            Field::Merchant | Field::Description => "equals, contains, starts_with or regex",
            Field::Amount => "equals, between or sign",
            Field::Account | Field::Currency => "equals",
            Field::Weekday => "in",
            Field::DayOfMonth => "in or between",
        }
    }
}

/// How a condition compares the field with its operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename = "RuleOperator", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Merchant, description, currency (`value`), amount (`amount`), account (`account_id`).
    Equals,
    /// Merchant or description contains `value`.
    Contains,
    /// Merchant or description starts with `value`.
    StartsWith,
    /// Merchant or description matches the pattern `value` (regex crate syntax, any case).
    Regex,
    /// Amount or day of the month within `min` and/or `max`, inclusive.
    Between,
    /// Amount is negative or positive (`sign`); zero is neither.
    Sign,
    /// Weekday or day of the month is one of `days`.
    In,
}

impl Operator {
    fn name(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::Contains => "contains",
            Operator::StartsWith => "starts_with",
            Operator::Regex => "regex",
            Operator::Between => "between",
            Operator::Sign => "sign",
            Operator::In => "in",
        }
    }
}

/// The sign an amount condition asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename = "RuleSign", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Sign {
    /// Below zero: money out.
    Negative,
    /// Above zero: money in.
    Positive,
}

/// One test of a transaction. Set only the operands the operator uses: text fields take
/// `equals`, `contains`, `starts_with` or `regex` with `value`; currency takes `equals` with a
/// three-letter `value`; amount takes `equals` (`amount`), `between` (`min` and/or `max`) or
/// `sign` (`sign`); account takes `equals` (`account_id`); weekday takes `in` (`days` 1–7);
/// day of month takes `in` (`days` 1–31) or `between` (`min`/`max` within 1–31).
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
#[oai(rename = "RuleCondition")]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// What the condition looks at.
    pub field: Field,
    /// How it compares; the field decides which operators apply.
    pub op: Operator,
    /// The text operand of merchant, description and currency. Matching ignores case and
    /// accents; a `regex` ignores case and sees the text as it is.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub value: Option<String>,
    /// The amount of `equals`, in minor units, signed.
    pub amount: Option<i64>,
    /// The lower bound of `between`, inclusive: minor units for amount, 1–31 for day of month.
    pub min: Option<i64>,
    /// The upper bound of `between`, inclusive: minor units for amount, 1–31 for day of month.
    pub max: Option<i64>,
    /// The sign of `sign`.
    pub sign: Option<Sign>,
    /// The account of `equals`.
    pub account_id: Option<Uuid>,
    /// The days of `in`, each once: ISO weekdays 1 (Monday) to 7 (Sunday), or days of the
    /// month 1–31.
    // Only the list's own limits are declared: poem-openapi would replace the items' schema
    // (and drop their `integer` type) to declare a range per item.
    #[oai(validator(min_items = 1, max_items = 31, unique_items = true))]
    pub days: Option<Vec<i64>>,
}

impl Condition {
    /// A test of a text field (`merchant`, `description`) with `op` and `value`.
    pub fn text(field: Field, op: Operator, value: String) -> Condition {
        Condition {
            field,
            op,
            value: Some(value),
            amount: None,
            min: None,
            max: None,
            sign: None,
            account_id: None,
            days: None,
        }
    }
}

impl Actions {
    /// Sets `category_id`, and nothing else.
    pub fn category(category_id: Uuid) -> Actions {
        Actions {
            category_id: Some(category_id),
            splits: None,
            tags: None,
            merchant: None,
            transfer: None,
        }
    }
}

/// A rule's conditions and how they combine.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
#[oai(rename = "RuleConditions")]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// `all` (the default) or `any`.
    #[oai(default)]
    #[serde(default, deserialize_with = "null_as_default")]
    pub r#match: Match,
    /// One to 20 conditions.
    #[oai(validator(min_items = 1, max_items = 20))]
    pub items: Vec<Condition>,
}

/// The spec lists a field with a default as optional, and every optional request field as
/// nullable (docs/ARCHITECTURE.md, "The spec's rules"), so `null` must read as the default too.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One part of a split: a category and its percentage of the amount.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
#[oai(rename = "RuleSplitShare")]
#[serde(deny_unknown_fields)]
pub struct SplitShare {
    /// The share's category.
    pub category_id: Uuid,
    /// 1 to 100; the shares of a split add up to exactly 100.
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    pub percent: i64,
}

/// What a matching rule does. At least one thing; `category_id` and `splits` exclude each
/// other, and a transfer (`transfer: true`) takes neither.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize, Deserialize)]
#[oai(rename = "RuleActions")]
#[serde(deny_unknown_fields)]
pub struct Actions {
    /// Sets the category.
    pub category_id: Option<Uuid>,
    /// Splits the amount over categories by percentage: 2 to 10 shares adding up to 100,
    /// each category once.
    #[oai(validator(min_items = 2, max_items = 10))]
    pub splits: Option<Vec<SplitShare>>,
    /// Added to the transaction's tags: 1 to 20, each 1–50 characters.
    #[oai(validator(min_items = 1, max_items = 20))]
    pub tags: Option<Vec<String>>,
    /// Renames the merchant (payee clean-up, e.g. "AMZN Mktp US*2K4" to "Amazon").
    #[oai(validator(min_length = 1, max_length = 200))]
    pub merchant: Option<String>,
    /// `true` marks the transaction as a transfer; `false` does nothing.
    pub transfer: Option<bool>,
}

/// A refused rule definition: the field path in the request body and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RuleError {
    /// The path, e.g. `conditions.items[2].value` or `actions.splits`.
    pub field: String,
    /// Why, for a person.
    pub reason: String,
}

impl RuleError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RuleError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What a rule sees of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The merchant as the transaction has it; `None` matches no merchant condition.
    pub merchant: Option<&'a str>,
    /// The description, empty when the bank gave none.
    pub description: &'a str,
    /// Minor units, signed.
    pub amount: i64,
    /// The account the transaction is in.
    pub account_id: Uuid,
    /// The ISO 4217 code, in any case.
    pub currency: &'a str,
    /// The booking date.
    pub date: NaiveDate,
}

/// A validated rule, ready to test transactions: patterns compiled and text operands folded
/// once, so testing does no parsing.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The stored rule's id (nil when only validating).
    pub id: Uuid,
    /// The rule's name, quoted in the reasoning.
    pub name: String,
    mode: Match,
    conditions: Vec<Compiled>,
    actions: Actions,
}

/// One condition ready to test, with the words that explain it.
#[derive(Debug, Clone)]
struct Compiled {
    test: Test,
    words: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextField {
    Merchant,
    Description,
}

#[derive(Debug, Clone)]
enum Test {
    /// Folded operands, compared with the folded text.
    Equals(TextField, String),
    Contains(TextField, String),
    StartsWith(TextField, String),
    /// Applied to the text as it is.
    Regex(TextField, Regex),
    /// Upper case.
    Currency(String),
    Amount(i64),
    AmountWithin(Option<i64>, Option<i64>),
    AmountSign(Sign),
    Account(Uuid),
    /// Bit n set for ISO weekday n.
    Weekdays(u8),
    /// Bit n set for day n.
    Days(u32),
    DayWithin(u32, u32),
}

impl CompiledRule {
    /// Validates a definition and compiles it; the error names the first bad field.
    pub fn compile(
        id: Uuid,
        name: &str,
        conditions: &Conditions,
        actions: &Actions,
    ) -> Result<CompiledRule, RuleError> {
        let n = conditions.items.len();
        if n == 0 {
            return Err(RuleError::new(
                "conditions.items",
                "must have at least one condition",
            ));
        }
        if n > MAX_CONDITIONS {
            return Err(RuleError::new(
                "conditions.items",
                format!("must have at most {MAX_CONDITIONS} conditions, not {n}"),
            ));
        }
        let compiled = conditions
            .items
            .iter()
            .enumerate()
            .map(|(i, c)| compile_condition(&format!("conditions.items[{i}]"), c))
            .collect::<Result<Vec<_>, _>>()?;
        check_actions(actions)?;
        Ok(CompiledRule {
            id,
            name: name.to_string(),
            mode: conditions.r#match,
            conditions: compiled,
            actions: actions.clone(),
        })
    }

    /// `None` when the transaction does not match; otherwise why it did, naming the
    /// conditions that held (for `any`, only those), e.g.
    /// `Rule 'Cloud hosting' matched: merchant contains 'AWS' and amount is negative`.
    pub fn matches(&self, c: &Candidate) -> Option<String> {
        self.matches_with(c, &mut Folded::new(c))
    }

    /// [`CompiledRule::matches`] with the candidate's folded text shared by every rule
    /// tested on it: a run tests hundreds of rules per transaction and folds its text once.
    pub fn matches_with<'a>(&self, c: &'a Candidate<'a>, text: &mut Folded<'a>) -> Option<String> {
        let mut held = Vec::new();
        for condition in &self.conditions {
            if condition.test.holds(c, text) {
                held.push(condition.words.as_str());
            } else if self.mode == Match::All {
                return None;
            }
        }
        if held.is_empty() {
            return None;
        }
        Some(format!(
            "Rule '{}' matched: {}",
            self.name,
            held.join(" and ")
        ))
    }

    /// What the rule does when it matches.
    pub fn actions(&self) -> &Actions {
        &self.actions
    }
}

/// Validates a whole definition without an id, as the HTTP layer does before storing it;
/// the same checks as [`CompiledRule::compile`], patterns included.
pub fn validate(conditions: &Conditions, actions: &Actions) -> Result<(), RuleError> {
    CompiledRule::compile(Uuid::nil(), "", conditions, actions).map(|_| ())
}

/// Splits a transaction amount by percentage shares so that the parts add up exactly
/// (largest remainder; ties to the earlier share; every part keeps the sign of `amount`).
///
/// One part per share, in order. A part is zero when the amount is too small to give every
/// share a minor unit (`-1` over 50/50 is `-1` and `0`); the ledger refuses zero parts, so
/// the caller leaves them out (and books a lone remaining part as a plain category).
/// Shares are expected as validated (adding up to 100); others are weighed by their sum, and
/// when nothing is left to weigh every part is zero.
pub fn split_amount(amount: i64, shares: &[SplitShare]) -> Vec<(Uuid, i64)> {
    // i128 because |i64::MIN| and `amount * percent` do not fit an i64.
    let total: i128 = shares.iter().map(|s| i128::from(s.percent.max(0))).sum();
    let magnitude = i128::from(amount).abs();
    if total == 0 {
        return shares.iter().map(|s| (s.category_id, 0)).collect();
    }
    let mut parts: Vec<(i128, i128)> = shares
        .iter()
        .map(|s| {
            let exact = magnitude * i128::from(s.percent.max(0));
            (exact / total, exact % total)
        })
        .collect();
    let given: i128 = parts.iter().map(|(part, _)| part).sum();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Stable, so equal remainders keep the earlier share first.
    order.sort_by(|&a, &b| parts[b].1.cmp(&parts[a].1));
    // The floors leave less than one unit per share, so one pass hands out the rest.
    let left = usize::try_from(magnitude - given).unwrap_or(0);
    for &i in order.iter().take(left) {
        parts[i].0 += 1;
    }
    let sign = i128::from(amount.signum());
    shares
        .iter()
        .zip(parts)
        .map(|(s, (part, _))| {
            // No part exceeds |amount| and each has its sign, so it fits an i64.
            (s.category_id, i64::try_from(sign * part).unwrap_or(0))
        })
        .collect()
}

/// Refuses the operands the operator does not use, so a definition never carries a value
/// that looks meaningful but is ignored.
fn only(path: &str, c: &Condition, used: &[&str]) -> Result<(), RuleError> {
    let operands = [
        ("value", c.value.is_some()),
        ("amount", c.amount.is_some()),
        ("min", c.min.is_some()),
        ("max", c.max.is_some()),
        ("sign", c.sign.is_some()),
        ("account_id", c.account_id.is_some()),
        ("days", c.days.is_some()),
    ];
    match operands
        .iter()
        .find(|(name, present)| *present && !used.contains(name))
    {
        Some((name, _)) => Err(RuleError::new(
            format!("{path}.{name}"),
            format!("is not used by {}", c.op.name()),
        )),
        None => Ok(()),
    }
}

fn required(path: &str, operand: &str, op: Operator) -> RuleError {
    RuleError::new(
        format!("{path}.{operand}"),
        format!("is required by {}", op.name()),
    )
}

fn compile_condition(path: &str, c: &Condition) -> Result<Compiled, RuleError> {
    let text_field = match c.field {
        Field::Merchant => Some(TextField::Merchant),
        Field::Description => Some(TextField::Description),
        _ => None,
    };
    let field = c.field.name().replace('_', " ");
    let (test, words) = match (c.field, c.op, text_field) {
        (_, Operator::Equals, Some(t)) => {
            only(path, c, &["value"])?;
            let v = text_value(path, c)?;
            (Test::Equals(t, fold(v)), format!("{field} equals '{v}'"))
        }
        (_, Operator::Contains, Some(t)) => {
            only(path, c, &["value"])?;
            let v = text_value(path, c)?;
            (
                Test::Contains(t, fold(v)),
                format!("{field} contains '{v}'"),
            )
        }
        (_, Operator::StartsWith, Some(t)) => {
            only(path, c, &["value"])?;
            let v = text_value(path, c)?;
            (
                Test::StartsWith(t, fold(v)),
                format!("{field} starts with '{v}'"),
            )
        }
        (_, Operator::Regex, Some(t)) => {
            only(path, c, &["value"])?;
            let v = text_value(path, c)?;
            (
                Test::Regex(t, pattern(path, v)?),
                format!("{field} matches '{v}'"),
            )
        }
        (Field::Currency, Operator::Equals, _) => {
            only(path, c, &["value"])?;
            let Some(v) = c.value.as_deref() else {
                return Err(required(path, "value", c.op));
            };
            if !(v.len() == 3 && v.bytes().all(|b| b.is_ascii_alphabetic())) {
                return Err(RuleError::new(
                    format!("{path}.value"),
                    "must be a three-letter currency code such as EUR",
                ));
            }
            let code = v.to_ascii_uppercase();
            let words = format!("currency equals '{code}'");
            (Test::Currency(code), words)
        }
        (Field::Amount, Operator::Equals, _) => {
            only(path, c, &["amount"])?;
            let a = c.amount.ok_or_else(|| required(path, "amount", c.op))?;
            (Test::Amount(a), format!("amount equals {}", money(a)))
        }
        (Field::Amount, Operator::Between, _) => {
            only(path, c, &["min", "max"])?;
            bounds(path, c, None)?;
            let words = match (c.min, c.max) {
                (Some(lo), Some(hi)) => format!("amount between {} and {}", money(lo), money(hi)),
                (Some(lo), None) => format!("amount at least {}", money(lo)),
                (None, Some(hi)) => format!("amount at most {}", money(hi)),
                (None, None) => String::new(),
            };
            (Test::AmountWithin(c.min, c.max), words)
        }
        (Field::Amount, Operator::Sign, _) => {
            only(path, c, &["sign"])?;
            let s = c.sign.ok_or_else(|| required(path, "sign", c.op))?;
            let words = match s {
                Sign::Negative => "amount is negative",
                Sign::Positive => "amount is positive",
            };
            (Test::AmountSign(s), words.to_string())
        }
        (Field::Account, Operator::Equals, _) => {
            only(path, c, &["account_id"])?;
            let a = c
                .account_id
                .ok_or_else(|| required(path, "account_id", c.op))?;
            (Test::Account(a), format!("account equals {a}"))
        }
        (Field::Weekday, Operator::In, _) => {
            only(path, c, &["days"])?;
            let days = days(path, c, 7)?;
            let names: Vec<&str> = days.iter().map(|&d| weekday_name(d)).collect();
            let mask = days.iter().fold(0u8, |m, &d| m | (1u8 << d));
            (
                Test::Weekdays(mask),
                format!("weekday is {}", or_list(&names)),
            )
        }
        (Field::DayOfMonth, Operator::In, _) => {
            only(path, c, &["days"])?;
            let days = days(path, c, 31)?;
            let names: Vec<String> = days.iter().map(u32::to_string).collect();
            let mask = days.iter().fold(0u32, |m, &d| m | (1u32 << d));
            (
                Test::Days(mask),
                format!("day of month is {}", or_list(&names)),
            )
        }
        (Field::DayOfMonth, Operator::Between, _) => {
            only(path, c, &["min", "max"])?;
            bounds(path, c, Some(31))?;
            // Within 1..=31 now, so the conversions cannot fail.
            let lo = c.min.and_then(|d| u32::try_from(d).ok()).unwrap_or(1);
            let hi = c.max.and_then(|d| u32::try_from(d).ok()).unwrap_or(31);
            let words = match (c.min, c.max) {
                (Some(_), Some(_)) => format!("day of month between {lo} and {hi}"),
                (Some(_), None) => format!("day of month at least {lo}"),
                _ => format!("day of month at most {hi}"),
            };
            (Test::DayWithin(lo, hi), words)
        }
        (f, op, _) => {
            return Err(RuleError::new(
                format!("{path}.op"),
                format!(
                    "{} does not apply to {}, which takes {}",
                    op.name(),
                    f.name(),
                    f.operators()
                ),
            ));
        }
    };
    Ok(Compiled { test, words })
}

/// The text operand of merchant and description.
fn text_value<'c>(path: &str, c: &'c Condition) -> Result<&'c str, RuleError> {
    let Some(v) = c.value.as_deref() else {
        return Err(required(path, "value", c.op));
    };
    if v.trim().is_empty() {
        return Err(RuleError::new(format!("{path}.value"), "must not be blank"));
    }
    if v.chars().count() > MAX_TEXT {
        return Err(RuleError::new(
            format!("{path}.value"),
            format!("must be at most {MAX_TEXT} characters"),
        ));
    }
    Ok(v)
}

fn pattern(path: &str, v: &str) -> Result<Regex, RuleError> {
    RegexBuilder::new(v)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let reason = match e {
                regex::Error::CompiledTooBig(_) => format!(
                    "is too large a pattern (at most {} KiB compiled); use fewer or smaller repetitions",
                    REGEX_SIZE_LIMIT / 1024
                ),
                other => format!("is not a valid pattern: {}", syntax_message(&other)),
            };
            RuleError::new(format!("{path}.value"), reason)
        })
}

/// The regex crate's message spans lines (the pattern, a caret, then `error: …`); a reason
/// travels in one JSON string, so keep its last line.
fn syntax_message(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    match last {
        Some(line) => line
            .trim()
            .strip_prefix("error: ")
            .unwrap_or(line.trim())
            .to_string(),
        None => text,
    }
}

/// The bounds of `between`; `range_max` is the day-of-month limit (amounts are unbounded).
fn bounds(path: &str, c: &Condition, range_max: Option<i64>) -> Result<(), RuleError> {
    if c.min.is_none() && c.max.is_none() {
        return Err(RuleError::new(
            format!("{path}.min"),
            "between needs min, max or both",
        ));
    }
    if let Some(top) = range_max {
        for (name, bound) in [("min", c.min), ("max", c.max)] {
            if let Some(b) = bound
                && !(1..=top).contains(&b)
            {
                return Err(RuleError::new(
                    format!("{path}.{name}"),
                    format!("must be a day of the month from 1 to {top}, not {b}"),
                ));
            }
        }
    }
    if let (Some(lo), Some(hi)) = (c.min, c.max)
        && lo > hi
    {
        return Err(RuleError::new(
            format!("{path}.min"),
            format!("must not be greater than max ({lo} > {hi})"),
        ));
    }
    Ok(())
}

/// The days of `in`, sorted, each within 1..=top and given once.
fn days(path: &str, c: &Condition, top: u32) -> Result<Vec<u32>, RuleError> {
    let Some(list) = c.days.as_deref() else {
        return Err(required(path, "days", c.op));
    };
    if list.is_empty() {
        return Err(RuleError::new(
            format!("{path}.days"),
            "must list at least one day",
        ));
    }
    let what = if top == 7 {
        "an ISO weekday from 1 (Monday) to 7 (Sunday)"
    } else {
        "a day of the month from 1 to 31"
    };
    let mut seen = Vec::with_capacity(list.len());
    for (i, &d) in list.iter().enumerate() {
        let day = u32::try_from(d)
            .ok()
            .filter(|d| (1..=top).contains(d))
            .ok_or_else(|| {
                RuleError::new(
                    format!("{path}.days[{i}]"),
                    format!("must be {what}, not {d}"),
                )
            })?;
        if seen.contains(&day) {
            return Err(RuleError::new(
                format!("{path}.days[{i}]"),
                format!("lists {day} a second time"),
            ));
        }
        seen.push(day);
    }
    seen.sort_unstable();
    Ok(seen)
}

fn check_actions(a: &Actions) -> Result<(), RuleError> {
    let transfer = a.transfer == Some(true);
    if a.category_id.is_none()
        && a.splits.is_none()
        && a.tags.is_none()
        && a.merchant.is_none()
        && !transfer
    {
        return Err(RuleError::new(
            "actions",
            "must do at least one thing: set category_id, splits, tags, merchant or transfer",
        ));
    }
    if transfer {
        if a.category_id.is_some() {
            return Err(RuleError::new(
                "actions.category_id",
                "must be absent when transfer is true: a transfer has no category",
            ));
        }
        if a.splits.is_some() {
            return Err(RuleError::new(
                "actions.splits",
                "must be absent when transfer is true: a transfer has no category",
            ));
        }
    }
    if let Some(splits) = &a.splits {
        if a.category_id.is_some() {
            return Err(RuleError::new(
                "actions.splits",
                "cannot be combined with category_id: each share has its own category",
            ));
        }
        check_splits(splits)?;
    }
    if let Some(tags) = &a.tags {
        check_tags(tags)?;
    }
    if let Some(m) = &a.merchant {
        let n = m.chars().count();
        if m.trim().is_empty() {
            return Err(RuleError::new("actions.merchant", "must not be blank"));
        }
        if n > MAX_TEXT {
            return Err(RuleError::new(
                "actions.merchant",
                format!("must be at most {MAX_TEXT} characters"),
            ));
        }
        if m.chars().any(char::is_control) {
            return Err(RuleError::new(
                "actions.merchant",
                "must not contain control characters",
            ));
        }
    }
    Ok(())
}

fn check_splits(splits: &[SplitShare]) -> Result<(), RuleError> {
    if !SPLIT_SHARES.contains(&splits.len()) {
        return Err(RuleError::new(
            "actions.splits",
            format!(
                "must have {} to {} shares, not {} (one share is just a category)",
                SPLIT_SHARES.start(),
                SPLIT_SHARES.end(),
                splits.len()
            ),
        ));
    }
    for (i, s) in splits.iter().enumerate() {
        if !(1..=100).contains(&s.percent) {
            return Err(RuleError::new(
                format!("actions.splits[{i}].percent"),
                format!("must be from 1 to 100, not {}", s.percent),
            ));
        }
        if splits[..i].iter().any(|e| e.category_id == s.category_id) {
            return Err(RuleError::new(
                format!("actions.splits[{i}].category_id"),
                "is already in an earlier share; give each category one share",
            ));
        }
    }
    // Each is at most 100 and there are at most 10, so the sum cannot overflow.
    let sum: i64 = splits.iter().map(|s| s.percent).sum();
    if sum != 100 {
        return Err(RuleError::new(
            "actions.splits",
            format!("percentages must add up to 100; they add up to {sum}"),
        ));
    }
    Ok(())
}

/// The ledger's rules for a transaction's tags, so a rule never adds one the ledger refuses.
fn check_tags(tags: &[String]) -> Result<(), RuleError> {
    if tags.is_empty() {
        return Err(RuleError::new(
            "actions.tags",
            "must list at least one tag (leave it out to add none)",
        ));
    }
    if tags.len() > MAX_TAGS {
        return Err(RuleError::new(
            "actions.tags",
            format!("must have at most {MAX_TAGS} tags"),
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        let n = tag.trim().chars().count();
        if !(1..=MAX_TAG).contains(&n) || tag.chars().any(char::is_control) {
            return Err(RuleError::new(
                format!("actions.tags[{i}]"),
                format!("a tag is 1-{MAX_TAG} characters without control characters"),
            ));
        }
    }
    Ok(())
}

/// Minor units as a decimal with two places, e.g. `-1234` as `-12.34`. Rules do not know
/// the currency's exponent; two places is right for most and readable for the rest.
fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn weekday_name(d: u32) -> &'static str {
    match d {
        1 => "Monday",
        2 => "Tuesday",
        3 => "Wednesday",
        4 => "Thursday",
        5 => "Friday",
        6 => "Saturday",
        _ => "Sunday",
    }
}

/// `a`, `a or b`, `a, b or c`.
fn or_list<T: fmt::Display>(items: &[T]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let head: Vec<String> = init.iter().map(T::to_string).collect();
            format!("{} or {last}", head.join(", "))
        }
    }
}

/// A candidate's text folded at most once, however many conditions (of however many rules)
/// look at it.
pub struct Folded<'a> {
    candidate: &'a Candidate<'a>,
    merchant: Option<Option<String>>,
    description: Option<String>,
}

impl<'a> Folded<'a> {
    /// Nothing folded yet: each field is folded when a condition first asks for it.
    pub fn new(candidate: &'a Candidate<'a>) -> Self {
        Folded {
            candidate,
            merchant: None,
            description: None,
        }
    }

    fn get(&mut self, field: TextField) -> Option<&str> {
        let c = self.candidate;
        match field {
            TextField::Merchant => self
                .merchant
                .get_or_insert_with(|| c.merchant.map(fold))
                .as_deref(),
            TextField::Description => Some(
                self.description
                    .get_or_insert_with(|| fold(c.description))
                    .as_str(),
            ),
        }
    }
}

fn raw<'a>(c: &Candidate<'a>, field: TextField) -> Option<&'a str> {
    match field {
        TextField::Merchant => c.merchant,
        TextField::Description => Some(c.description),
    }
}

impl Test {
    fn holds(&self, c: &Candidate, text: &mut Folded) -> bool {
        match self {
            Test::Equals(f, v) => text.get(*f).is_some_and(|t| t == v.as_str()),
            Test::Contains(f, v) => text.get(*f).is_some_and(|t| t.contains(v.as_str())),
            Test::StartsWith(f, v) => text.get(*f).is_some_and(|t| t.starts_with(v.as_str())),
            Test::Regex(f, re) => raw(c, *f).is_some_and(|t| re.is_match(t)),
            Test::Currency(code) => c.currency.eq_ignore_ascii_case(code),
            Test::Amount(a) => c.amount == *a,
            Test::AmountWithin(lo, hi) => {
                lo.is_none_or(|lo| c.amount >= lo) && hi.is_none_or(|hi| c.amount <= hi)
            }
            Test::AmountSign(Sign::Negative) => c.amount < 0,
            Test::AmountSign(Sign::Positive) => c.amount > 0,
            Test::Account(a) => c.account_id == *a,
            Test::Weekdays(mask) => mask & (1u8 << c.date.weekday().number_from_monday()) != 0,
            Test::Days(mask) => mask & (1u32 << c.date.day()) != 0,
            Test::DayWithin(lo, hi) => (*lo..=*hi).contains(&c.date.day()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Uuid {
        Uuid::parse_str("0190a6f0-0000-7000-8000-000000000001").unwrap()
    }

    fn other_account() -> Uuid {
        Uuid::parse_str("0190a6f0-0000-7000-8000-000000000002").unwrap()
    }

    fn category(n: u128) -> Uuid {
        Uuid::from_u128(0x0190_a6f0_0000_7000_8000_0000_0000_0000 + n)
    }

    /// Tuesday 1 December 2026.
    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    fn candidate() -> Candidate<'static> {
        Candidate {
            merchant: Some("AMZN Mktp US*2K4"),
            description: "Card payment Café de Flore",
            amount: -1234,
            account_id: account(),
            currency: "EUR",
            date: date(),
        }
    }

    fn cond(field: Field, op: Operator) -> Condition {
        Condition {
            field,
            op,
            value: None,
            amount: None,
            min: None,
            max: None,
            sign: None,
            account_id: None,
            days: None,
        }
    }

    fn text(field: Field, op: Operator, v: &str) -> Condition {
        Condition {
            value: Some(v.into()),
            ..cond(field, op)
        }
    }

    fn between(field: Field, min: Option<i64>, max: Option<i64>) -> Condition {
        Condition {
            min,
            max,
            ..cond(field, Operator::Between)
        }
    }

    fn days_in(field: Field, days: &[i64]) -> Condition {
        Condition {
            days: Some(days.to_vec()),
            ..cond(field, Operator::In)
        }
    }

    fn all(items: Vec<Condition>) -> Conditions {
        Conditions {
            r#match: Match::All,
            items,
        }
    }

    fn any(items: Vec<Condition>) -> Conditions {
        Conditions {
            r#match: Match::Any,
            items,
        }
    }

    fn categorise() -> Actions {
        Actions {
            category_id: Some(category(1)),
            splits: None,
            tags: None,
            merchant: None,
            transfer: None,
        }
    }

    fn no_actions() -> Actions {
        Actions {
            category_id: None,
            ..categorise()
        }
    }

    fn rule(name: &str, conditions: Conditions) -> CompiledRule {
        CompiledRule::compile(Uuid::nil(), name, &conditions, &categorise()).unwrap()
    }

    fn one(c: Condition) -> CompiledRule {
        rule("T", all(vec![c]))
    }

    fn refused(conditions: Conditions, actions: Actions) -> RuleError {
        let Err(err) = validate(&conditions, &actions) else {
            panic!("accepted {conditions:?} with {actions:?}");
        };
        // compile and validate are the same judgement.
        assert_eq!(
            CompiledRule::compile(Uuid::nil(), "x", &conditions, &actions).unwrap_err(),
            err
        );
        err
    }

    #[test]
    fn every_operator_of_every_field() {
        use Field as F;
        use Operator as O;
        let base = candidate();
        let no_merchant = Candidate {
            merchant: None,
            ..base
        };
        let empty = Candidate {
            description: "",
            ..base
        };
        let at = |y, m, d| Candidate {
            date: NaiveDate::from_ymd_opt(y, m, d).unwrap(),
            ..base
        };
        let worth = |amount| Candidate { amount, ..base };
        let cases: Vec<(&str, Condition, Candidate, bool)> = vec![
            // merchant
            (
                "m eq",
                text(F::Merchant, O::Equals, "amzn mktp us*2k4"),
                base,
                true,
            ),
            (
                "m eq part",
                text(F::Merchant, O::Equals, "amzn"),
                base,
                false,
            ),
            (
                "m contains",
                text(F::Merchant, O::Contains, "mktp"),
                base,
                true,
            ),
            (
                "m contains no",
                text(F::Merchant, O::Contains, "ebay"),
                base,
                false,
            ),
            (
                "m starts",
                text(F::Merchant, O::StartsWith, "AMZN"),
                base,
                true,
            ),
            (
                "m starts mid",
                text(F::Merchant, O::StartsWith, "Mktp"),
                base,
                false,
            ),
            (
                "m regex",
                text(F::Merchant, O::Regex, r"^amzn\s+mktp"),
                base,
                true,
            ),
            (
                "m regex no",
                text(F::Merchant, O::Regex, r"^mktp"),
                base,
                false,
            ),
            (
                "m missing contains",
                text(F::Merchant, O::Contains, "a"),
                no_merchant,
                false,
            ),
            (
                "m missing regex",
                text(F::Merchant, O::Regex, "^$"),
                no_merchant,
                false,
            ),
            (
                "m missing eq",
                text(F::Merchant, O::Equals, "x"),
                no_merchant,
                false,
            ),
            // description
            (
                "d eq",
                text(F::Description, O::Equals, "card payment cafe de flore"),
                base,
                true,
            ),
            (
                "d contains",
                text(F::Description, O::Contains, "payment"),
                base,
                true,
            ),
            (
                "d contains no",
                text(F::Description, O::Contains, "transfer"),
                base,
                false,
            ),
            (
                "d starts",
                text(F::Description, O::StartsWith, "card"),
                base,
                true,
            ),
            (
                "d starts no",
                text(F::Description, O::StartsWith, "payment"),
                base,
                false,
            ),
            (
                "d regex",
                text(F::Description, O::Regex, "Café de"),
                base,
                true,
            ),
            (
                "d regex empty",
                text(F::Description, O::Regex, "^$"),
                empty,
                true,
            ),
            (
                "d regex not empty",
                text(F::Description, O::Regex, "^$"),
                base,
                false,
            ),
            // currency
            ("cur eq", text(F::Currency, O::Equals, "eur"), base, true),
            (
                "cur eq upper",
                text(F::Currency, O::Equals, "EUR"),
                base,
                true,
            ),
            (
                "cur other",
                text(F::Currency, O::Equals, "USD"),
                base,
                false,
            ),
            (
                "cur lower candidate",
                text(F::Currency, O::Equals, "EUR"),
                Candidate {
                    currency: "eur",
                    ..base
                },
                true,
            ),
            // amount
            (
                "a eq",
                Condition {
                    amount: Some(-1234),
                    ..cond(F::Amount, O::Equals)
                },
                base,
                true,
            ),
            (
                "a eq no",
                Condition {
                    amount: Some(1234),
                    ..cond(F::Amount, O::Equals)
                },
                base,
                false,
            ),
            (
                "a between",
                between(F::Amount, Some(-10000), Some(-100)),
                base,
                true,
            ),
            (
                "a between lo edge",
                between(F::Amount, Some(-1234), Some(0)),
                base,
                true,
            ),
            (
                "a between hi edge",
                between(F::Amount, Some(-5000), Some(-1234)),
                base,
                true,
            ),
            (
                "a between out",
                between(F::Amount, Some(-1000), Some(-100)),
                base,
                false,
            ),
            (
                "a min only",
                between(F::Amount, Some(-2000), None),
                base,
                true,
            ),
            (
                "a min only out",
                between(F::Amount, Some(-1000), None),
                base,
                false,
            ),
            (
                "a max only",
                between(F::Amount, None, Some(-1000)),
                base,
                true,
            ),
            (
                "a max only out",
                between(F::Amount, None, Some(-2000)),
                base,
                false,
            ),
            (
                "a negative",
                Condition {
                    sign: Some(Sign::Negative),
                    ..cond(F::Amount, O::Sign)
                },
                base,
                true,
            ),
            (
                "a positive",
                Condition {
                    sign: Some(Sign::Positive),
                    ..cond(F::Amount, O::Sign)
                },
                base,
                false,
            ),
            (
                "a positive income",
                Condition {
                    sign: Some(Sign::Positive),
                    ..cond(F::Amount, O::Sign)
                },
                worth(5000),
                true,
            ),
            (
                "a zero is not negative",
                Condition {
                    sign: Some(Sign::Negative),
                    ..cond(F::Amount, O::Sign)
                },
                worth(0),
                false,
            ),
            (
                "a zero is not positive",
                Condition {
                    sign: Some(Sign::Positive),
                    ..cond(F::Amount, O::Sign)
                },
                worth(0),
                false,
            ),
            // account
            (
                "acct eq",
                Condition {
                    account_id: Some(account()),
                    ..cond(F::Account, O::Equals)
                },
                base,
                true,
            ),
            (
                "acct other",
                Condition {
                    account_id: Some(other_account()),
                    ..cond(F::Account, O::Equals)
                },
                base,
                false,
            ),
            // weekday: 2026-12-01 is a Tuesday (2)
            ("wd tuesday", days_in(F::Weekday, &[2]), base, true),
            ("wd several", days_in(F::Weekday, &[5, 2, 1]), base, true),
            ("wd weekend", days_in(F::Weekday, &[6, 7]), base, false),
            (
                "wd sunday",
                days_in(F::Weekday, &[7]),
                at(2026, 12, 6),
                true,
            ),
            (
                "wd monday",
                days_in(F::Weekday, &[1]),
                at(2026, 11, 30),
                true,
            ),
            // day of month
            ("dom in", days_in(F::DayOfMonth, &[1, 15]), base, true),
            ("dom in no", days_in(F::DayOfMonth, &[2, 15]), base, false),
            (
                "dom in 31",
                days_in(F::DayOfMonth, &[31]),
                at(2026, 12, 31),
                true,
            ),
            (
                "dom between",
                between(F::DayOfMonth, Some(1), Some(5)),
                base,
                true,
            ),
            (
                "dom between out",
                between(F::DayOfMonth, Some(25), Some(31)),
                base,
                false,
            ),
            (
                "dom between in",
                between(F::DayOfMonth, Some(25), Some(31)),
                at(2026, 12, 28),
                true,
            ),
            (
                "dom min only",
                between(F::DayOfMonth, Some(28), None),
                at(2026, 2, 28),
                true,
            ),
            (
                "dom max only",
                between(F::DayOfMonth, None, Some(3)),
                base,
                true,
            ),
            (
                "dom max only out",
                between(F::DayOfMonth, None, Some(3)),
                at(2026, 12, 4),
                false,
            ),
        ];
        for (name, condition, c, expected) in cases {
            let r = one(condition);
            assert_eq!(r.matches(&c).is_some(), expected, "{name}");
        }
    }

    #[test]
    fn text_ignores_case_and_accents() {
        let cafe = |merchant| Candidate {
            merchant: Some(merchant),
            ..candidate()
        };
        let cases = [
            (Operator::Equals, "cafe", "Café", true),
            (Operator::Equals, "Café", "CAFE", true),
            (Operator::Equals, "CAFÉ", "café", true),
            (Operator::Contains, "cafe", "Le Café de Flore", true),
            (Operator::Contains, "CRÈME", "creme brulee", true),
            (Operator::StartsWith, "ÉCOLE", "ecole primaire", true),
            (Operator::StartsWith, "cafe", "Le Café", false),
            (Operator::Equals, "cafe", "cafes", false),
        ];
        for (op, value, merchant, expected) in cases {
            let r = one(text(Field::Merchant, op, value));
            assert_eq!(
                r.matches(&cafe(merchant)).is_some(),
                expected,
                "{op:?} {value} vs {merchant}"
            );
        }
        // A pattern sees the text as it is: any case, but accents count.
        let re = one(text(Field::Merchant, Operator::Regex, "^caf"));
        assert!(re.matches(&cafe("CAFÉ")).is_some());
        let re = one(text(Field::Merchant, Operator::Regex, "^cafe$"));
        assert!(re.matches(&cafe("Café")).is_none());
        let re = one(text(Field::Merchant, Operator::Regex, "^café$"));
        assert!(re.matches(&cafe("CAFÉ")).is_some());
    }

    #[test]
    fn all_needs_every_condition_and_any_one() {
        let aws = text(Field::Merchant, Operator::Contains, "aws");
        let out = Condition {
            sign: Some(Sign::Negative),
            ..cond(Field::Amount, Operator::Sign)
        };
        let usd = text(Field::Currency, Operator::Equals, "USD");
        let c = Candidate {
            merchant: Some("AWS EMEA"),
            ..candidate()
        };

        let both = rule("R", all(vec![aws.clone(), out.clone()]));
        assert!(both.matches(&c).is_some());
        let one_fails = rule("R", all(vec![aws.clone(), usd.clone()]));
        assert!(one_fails.matches(&c).is_none());

        let either = rule("R", any(vec![usd.clone(), aws.clone()]));
        assert_eq!(
            either.matches(&c).as_deref(),
            Some("Rule 'R' matched: merchant contains 'aws'")
        );
        let neither = rule(
            "R",
            any(vec![usd, text(Field::Merchant, Operator::Equals, "x")]),
        );
        assert!(neither.matches(&c).is_none());
        let any_both = rule("R", any(vec![aws, out]));
        assert_eq!(
            any_both.matches(&c).as_deref(),
            Some("Rule 'R' matched: merchant contains 'aws' and amount is negative")
        );
    }

    #[test]
    fn reasoning_names_the_conditions_in_words() {
        let r = rule(
            "Cloud hosting",
            all(vec![
                text(Field::Merchant, Operator::Contains, "AWS"),
                between(Field::Amount, Some(-10000), Some(-100)),
            ]),
        );
        let c = Candidate {
            merchant: Some("aws emea"),
            ..candidate()
        };
        assert_eq!(
            r.matches(&c).as_deref(),
            Some(
                "Rule 'Cloud hosting' matched: merchant contains 'AWS' and amount between -100.00 and -1.00"
            )
        );

        let words = |c: Condition| {
            one(c)
                .conditions
                .into_iter()
                .map(|c| c.words)
                .collect::<String>()
        };
        let cases = [
            (
                text(Field::Merchant, Operator::Equals, "Amazon"),
                "merchant equals 'Amazon'",
            ),
            (
                text(Field::Description, Operator::StartsWith, "SEPA"),
                "description starts with 'SEPA'",
            ),
            (
                text(Field::Description, Operator::Regex, "^x+$"),
                "description matches '^x+$'",
            ),
            (
                text(Field::Currency, Operator::Equals, "usd"),
                "currency equals 'USD'",
            ),
            (
                Condition {
                    amount: Some(5),
                    ..cond(Field::Amount, Operator::Equals)
                },
                "amount equals 0.05",
            ),
            (
                Condition {
                    amount: Some(-5),
                    ..cond(Field::Amount, Operator::Equals)
                },
                "amount equals -0.05",
            ),
            (
                Condition {
                    amount: Some(123456),
                    ..cond(Field::Amount, Operator::Equals)
                },
                "amount equals 1234.56",
            ),
            (
                Condition {
                    amount: Some(i64::MIN),
                    ..cond(Field::Amount, Operator::Equals)
                },
                "amount equals -92233720368547758.08",
            ),
            (
                between(Field::Amount, Some(-2500), None),
                "amount at least -25.00",
            ),
            (between(Field::Amount, None, Some(0)), "amount at most 0.00"),
            (
                Condition {
                    sign: Some(Sign::Positive),
                    ..cond(Field::Amount, Operator::Sign)
                },
                "amount is positive",
            ),
            (
                Condition {
                    account_id: Some(account()),
                    ..cond(Field::Account, Operator::Equals)
                },
                "account equals 0190a6f0-0000-7000-8000-000000000001",
            ),
            (days_in(Field::Weekday, &[2]), "weekday is Tuesday"),
            (
                days_in(Field::Weekday, &[7, 1, 3]),
                "weekday is Monday, Wednesday or Sunday",
            ),
            (
                days_in(Field::DayOfMonth, &[15, 1]),
                "day of month is 1 or 15",
            ),
            (
                between(Field::DayOfMonth, Some(1), Some(5)),
                "day of month between 1 and 5",
            ),
            (
                between(Field::DayOfMonth, Some(25), None),
                "day of month at least 25",
            ),
            (
                between(Field::DayOfMonth, None, Some(3)),
                "day of month at most 3",
            ),
        ];
        for (c, expected) in cases {
            assert_eq!(words(c), expected);
        }
    }

    #[test]
    fn weekday_is_iso() {
        assert_eq!(date().weekday().number_from_monday(), 2);
        let tuesday = one(days_in(Field::Weekday, &[2]));
        assert!(tuesday.matches(&candidate()).is_some());
        for other in [1, 3, 4, 5, 6, 7] {
            assert!(
                one(days_in(Field::Weekday, &[other]))
                    .matches(&candidate())
                    .is_none()
            );
        }
    }

    #[test]
    fn invalid_conditions_name_their_field() {
        use Field as F;
        use Operator as O;
        let p = "conditions.items[0]";
        let long = "x".repeat(201);
        let cases: Vec<(Condition, String, &str)> = vec![
            // operators a field does not take
            (
                text(F::Merchant, O::Between, "x"),
                format!("{p}.op"),
                "between does not apply to merchant",
            ),
            (
                text(F::Description, O::In, "x"),
                format!("{p}.op"),
                "in does not apply to description",
            ),
            (
                text(F::Currency, O::Contains, "EUR"),
                format!("{p}.op"),
                "contains does not apply to currency",
            ),
            (
                cond(F::Amount, O::Contains),
                format!("{p}.op"),
                "amount, which takes equals, between or sign",
            ),
            (
                cond(F::Account, O::In),
                format!("{p}.op"),
                "in does not apply to account",
            ),
            (
                cond(F::Weekday, O::Between),
                format!("{p}.op"),
                "weekday, which takes in",
            ),
            (
                cond(F::DayOfMonth, O::Equals),
                format!("{p}.op"),
                "day_of_month, which takes in or between",
            ),
            (
                cond(F::Merchant, O::Sign),
                format!("{p}.op"),
                "sign does not apply",
            ),
            // missing operands
            (
                cond(F::Merchant, O::Contains),
                format!("{p}.value"),
                "is required by contains",
            ),
            (
                cond(F::Description, O::Regex),
                format!("{p}.value"),
                "is required by regex",
            ),
            (
                cond(F::Currency, O::Equals),
                format!("{p}.value"),
                "is required by equals",
            ),
            (
                cond(F::Amount, O::Equals),
                format!("{p}.amount"),
                "is required by equals",
            ),
            (
                cond(F::Amount, O::Between),
                format!("{p}.min"),
                "between needs min, max or both",
            ),
            (
                cond(F::Amount, O::Sign),
                format!("{p}.sign"),
                "is required by sign",
            ),
            (
                cond(F::Account, O::Equals),
                format!("{p}.account_id"),
                "is required by equals",
            ),
            (
                cond(F::Weekday, O::In),
                format!("{p}.days"),
                "is required by in",
            ),
            (
                cond(F::DayOfMonth, O::In),
                format!("{p}.days"),
                "is required by in",
            ),
            (
                cond(F::DayOfMonth, O::Between),
                format!("{p}.min"),
                "between needs min, max or both",
            ),
            // operands the operator does not use
            (
                Condition {
                    amount: Some(1),
                    ..text(F::Merchant, O::Contains, "x")
                },
                format!("{p}.amount"),
                "is not used by contains",
            ),
            (
                Condition {
                    days: Some(vec![1]),
                    ..text(F::Currency, O::Equals, "EUR")
                },
                format!("{p}.days"),
                "is not used by equals",
            ),
            (
                Condition {
                    value: Some("1".into()),
                    amount: Some(1),
                    ..cond(F::Amount, O::Equals)
                },
                format!("{p}.value"),
                "is not used by equals",
            ),
            (
                Condition {
                    sign: Some(Sign::Negative),
                    ..between(F::Amount, Some(1), None)
                },
                format!("{p}.sign"),
                "is not used by between",
            ),
            (
                Condition {
                    min: Some(1),
                    sign: Some(Sign::Negative),
                    ..cond(F::Amount, O::Sign)
                },
                format!("{p}.min"),
                "is not used by sign",
            ),
            (
                Condition {
                    max: Some(1),
                    account_id: Some(account()),
                    ..cond(F::Account, O::Equals)
                },
                format!("{p}.max"),
                "is not used by equals",
            ),
            (
                Condition {
                    account_id: Some(account()),
                    ..days_in(F::Weekday, &[1])
                },
                format!("{p}.account_id"),
                "is not used by in",
            ),
            (
                Condition {
                    min: Some(1),
                    ..days_in(F::DayOfMonth, &[1])
                },
                format!("{p}.min"),
                "is not used by in",
            ),
            (
                Condition {
                    days: Some(vec![1]),
                    ..between(F::DayOfMonth, Some(1), None)
                },
                format!("{p}.days"),
                "is not used by between",
            ),
            // bad operands
            (
                text(F::Merchant, O::Contains, ""),
                format!("{p}.value"),
                "must not be blank",
            ),
            (
                text(F::Merchant, O::Equals, "   "),
                format!("{p}.value"),
                "must not be blank",
            ),
            (
                text(F::Description, O::StartsWith, &long),
                format!("{p}.value"),
                "at most 200 characters",
            ),
            (
                text(F::Merchant, O::Regex, &long),
                format!("{p}.value"),
                "at most 200 characters",
            ),
            (
                text(F::Merchant, O::Regex, "(unclosed"),
                format!("{p}.value"),
                "is not a valid pattern: unclosed group",
            ),
            (
                text(F::Merchant, O::Regex, "[z-a]"),
                format!("{p}.value"),
                "is not a valid pattern: ",
            ),
            (
                text(F::Currency, O::Equals, "EU"),
                format!("{p}.value"),
                "three-letter currency code",
            ),
            (
                text(F::Currency, O::Equals, "EURO"),
                format!("{p}.value"),
                "three-letter currency code",
            ),
            (
                text(F::Currency, O::Equals, "E1R"),
                format!("{p}.value"),
                "three-letter currency code",
            ),
            (
                between(F::Amount, Some(-100), Some(-10000)),
                format!("{p}.min"),
                "must not be greater than max (-100 > -10000)",
            ),
            (
                between(F::DayOfMonth, Some(0), Some(5)),
                format!("{p}.min"),
                "from 1 to 31, not 0",
            ),
            (
                between(F::DayOfMonth, Some(1), Some(32)),
                format!("{p}.max"),
                "from 1 to 31, not 32",
            ),
            (
                between(F::DayOfMonth, None, Some(-1)),
                format!("{p}.max"),
                "from 1 to 31, not -1",
            ),
            (
                between(F::DayOfMonth, Some(20), Some(10)),
                format!("{p}.min"),
                "must not be greater than max",
            ),
            (
                days_in(F::Weekday, &[]),
                format!("{p}.days"),
                "at least one day",
            ),
            (
                days_in(F::Weekday, &[1, 8]),
                format!("{p}.days[1]"),
                "ISO weekday from 1 (Monday) to 7 (Sunday), not 8",
            ),
            (days_in(F::Weekday, &[0]), format!("{p}.days[0]"), "not 0"),
            (
                days_in(F::Weekday, &[3, 3]),
                format!("{p}.days[1]"),
                "lists 3 a second time",
            ),
            (
                days_in(F::DayOfMonth, &[]),
                format!("{p}.days"),
                "at least one day",
            ),
            (
                days_in(F::DayOfMonth, &[1, 2, 32]),
                format!("{p}.days[2]"),
                "day of the month from 1 to 31, not 32",
            ),
            (
                days_in(F::DayOfMonth, &[i64::MAX]),
                format!("{p}.days[0]"),
                "from 1 to 31",
            ),
            (
                days_in(F::DayOfMonth, &[15, 15]),
                format!("{p}.days[1]"),
                "a second time",
            ),
        ];
        for (c, field, reason) in cases {
            let err = refused(all(vec![c.clone()]), categorise());
            assert_eq!(err.field, field, "{c:?}: {err}");
            assert!(err.reason.contains(reason), "{c:?}: {err}");
        }
    }

    #[test]
    fn the_path_counts_the_condition() {
        let ok = text(Field::Merchant, Operator::Contains, "a");
        let bad = cond(Field::Amount, Operator::Equals);
        let err = refused(
            any(vec![ok.clone(), ok.clone(), bad, ok.clone()]),
            categorise(),
        );
        assert_eq!(err.field, "conditions.items[2].amount");
        assert_eq!(
            err.to_string(),
            "conditions.items[2].amount: is required by equals"
        );

        let err = refused(all(vec![]), categorise());
        assert_eq!(err.field, "conditions.items");
        let err = refused(all(vec![ok.clone(); 21]), categorise());
        assert_eq!(err.field, "conditions.items");
        assert!(err.reason.contains("at most 20"), "{err}");
        assert!(validate(&all(vec![ok; 20]), &categorise()).is_ok());
    }

    #[test]
    fn invalid_actions_name_their_field() {
        let split = |shares: &[(u128, i64)]| {
            Some(
                shares
                    .iter()
                    .map(|&(c, percent)| SplitShare {
                        category_id: category(c),
                        percent,
                    })
                    .collect::<Vec<_>>(),
            )
        };
        // Ten distinct categories at `percent` each.
        let ten_shares = |percent| (0..10).map(|c| (c, percent)).collect::<Vec<_>>();
        let cases: Vec<(Actions, &str, &str)> = vec![
            (no_actions(), "actions", "must do at least one thing"),
            (
                Actions {
                    transfer: Some(false),
                    ..no_actions()
                },
                "actions",
                "must do at least one thing",
            ),
            (
                Actions {
                    splits: split(&[(2, 50), (3, 50)]),
                    ..categorise()
                },
                "actions.splits",
                "cannot be combined with category_id",
            ),
            (
                Actions {
                    transfer: Some(true),
                    ..categorise()
                },
                "actions.category_id",
                "a transfer has no category",
            ),
            (
                Actions {
                    transfer: Some(true),
                    splits: split(&[(2, 50), (3, 50)]),
                    ..no_actions()
                },
                "actions.splits",
                "a transfer has no category",
            ),
            (
                Actions {
                    splits: split(&[(2, 100)]),
                    ..no_actions()
                },
                "actions.splits",
                "2 to 10 shares, not 1",
            ),
            (
                Actions {
                    splits: split(&[]),
                    ..no_actions()
                },
                "actions.splits",
                "2 to 10 shares, not 0",
            ),
            (
                Actions {
                    splits: split(&[ten_shares(9), vec![(10, 10)]].concat()),
                    ..no_actions()
                },
                "actions.splits",
                "2 to 10 shares, not 11",
            ),
            (
                Actions {
                    splits: split(&[(2, 0), (3, 100)]),
                    ..no_actions()
                },
                "actions.splits[0].percent",
                "from 1 to 100, not 0",
            ),
            (
                Actions {
                    splits: split(&[(2, 150), (3, -50)]),
                    ..no_actions()
                },
                "actions.splits[0].percent",
                "from 1 to 100, not 150",
            ),
            (
                Actions {
                    splits: split(&[(2, 50), (3, 49)]),
                    ..no_actions()
                },
                "actions.splits",
                "must add up to 100; they add up to 99",
            ),
            (
                Actions {
                    splits: split(&[(2, 50), (3, 50), (4, 1)]),
                    ..no_actions()
                },
                "actions.splits",
                "they add up to 101",
            ),
            (
                Actions {
                    splits: split(&[(2, 50), (2, 50)]),
                    ..no_actions()
                },
                "actions.splits[1].category_id",
                "earlier share",
            ),
            (
                Actions {
                    tags: Some(vec![]),
                    ..no_actions()
                },
                "actions.tags",
                "at least one tag",
            ),
            (
                Actions {
                    tags: Some(vec!["t".into(); 21]),
                    ..no_actions()
                },
                "actions.tags",
                "at most 20 tags",
            ),
            (
                Actions {
                    tags: Some(vec!["ok".into(), " ".into()]),
                    ..no_actions()
                },
                "actions.tags[1]",
                "1-50 characters",
            ),
            (
                Actions {
                    tags: Some(vec!["x".repeat(51)]),
                    ..no_actions()
                },
                "actions.tags[0]",
                "1-50 characters",
            ),
            (
                Actions {
                    tags: Some(vec!["a\u{7}".into()]),
                    ..no_actions()
                },
                "actions.tags[0]",
                "control characters",
            ),
            (
                Actions {
                    merchant: Some(String::new()),
                    ..no_actions()
                },
                "actions.merchant",
                "must not be blank",
            ),
            (
                Actions {
                    merchant: Some("é".repeat(201)),
                    ..no_actions()
                },
                "actions.merchant",
                "at most 200 characters",
            ),
            (
                Actions {
                    merchant: Some("Ama\nzon".into()),
                    ..no_actions()
                },
                "actions.merchant",
                "control characters",
            ),
        ];
        let conditions = all(vec![text(Field::Merchant, Operator::Contains, "a")]);
        for (a, field, reason) in cases {
            let err = refused(conditions.clone(), a.clone());
            assert_eq!(err.field, field, "{a:?}: {err}");
            assert!(err.reason.contains(reason), "{a:?}: {err}");
        }

        let fine = [
            categorise(),
            Actions {
                splits: split(&[(2, 33), (3, 33), (4, 34)]),
                ..no_actions()
            },
            Actions {
                splits: split(&ten_shares(10)),
                ..no_actions()
            },
            Actions {
                tags: Some(vec!["cloud".into(), "x".repeat(50)]),
                ..no_actions()
            },
            Actions {
                merchant: Some("Amazon".into()),
                ..no_actions()
            },
            Actions {
                merchant: Some("é".repeat(200)),
                ..categorise()
            },
            Actions {
                transfer: Some(true),
                ..no_actions()
            },
            Actions {
                transfer: Some(true),
                tags: Some(vec!["savings".into()]),
                ..no_actions()
            },
            Actions {
                transfer: Some(false),
                ..categorise()
            },
        ];
        for a in fine {
            assert!(validate(&conditions, &a).is_ok(), "{a:?}");
        }
    }

    #[test]
    fn catastrophic_patterns_run_in_linear_time() {
        let r = one(text(Field::Description, Operator::Regex, "(a+)+$"));
        let mut long = "a".repeat(50_000);
        long.push('b');
        let c = Candidate {
            description: &long,
            ..candidate()
        };
        // A backtracking engine takes exponential time here; the regex crate's is linear.
        assert!(r.matches(&c).is_none());
        let r = one(text(Field::Description, Operator::Regex, "(x+x+)+y"));
        let long = "x".repeat(50_000);
        let c = Candidate {
            description: &long,
            ..candidate()
        };
        assert!(r.matches(&c).is_none());
    }

    #[test]
    fn oversize_patterns_are_refused() {
        for p in [
            r"\w{1000}{1000}",
            r"\w{200}\w{200}\w{200}",
            r"(?:\w{100}){100}",
        ] {
            let err = refused(
                all(vec![text(Field::Merchant, Operator::Regex, p)]),
                categorise(),
            );
            assert_eq!(err.field, "conditions.items[0].value", "{p}");
            assert!(
                err.reason.starts_with("is too large a pattern"),
                "{p}: {err}"
            );
        }
        // A pattern of ordinary size compiles.
        assert!(
            validate(
                &all(vec![text(
                    Field::Merchant,
                    Operator::Regex,
                    r"^(amzn|amazon)\b.*\d{3}"
                )]),
                &categorise()
            )
            .is_ok()
        );
    }

    #[test]
    fn splits_add_up_exactly() {
        let shares = |percents: &[i64]| {
            percents
                .iter()
                .enumerate()
                .map(|(i, &percent)| SplitShare {
                    category_id: category(i as u128),
                    percent,
                })
                .collect::<Vec<_>>()
        };
        let amounts = |amount, percents: &[i64]| {
            let parts = split_amount(amount, &shares(percents));
            assert_eq!(
                parts.iter().map(|(_, a)| a).sum::<i64>(),
                amount,
                "{amount} {percents:?}"
            );
            for (i, (id, part)) in parts.iter().enumerate() {
                assert_eq!(*id, category(i as u128));
                assert!(
                    part.signum() == amount.signum() || *part == 0,
                    "{amount} {parts:?}"
                );
            }
            parts.into_iter().map(|(_, a)| a).collect::<Vec<_>>()
        };
        // 330 + 330 + 340; no remainders.
        assert_eq!(amounts(-1000, &[33, 33, 34]), vec![-330, -330, -340]);
        // 33.3 + 33.3 + 33.4: the largest remainder (.4) gets the unit left over.
        assert_eq!(amounts(-100, &[33, 33, 34]), vec![-33, -33, -34]);
        assert_eq!(amounts(-10, &[33, 33, 34]), vec![-3, -3, -4]);
        // Equal remainders: the earlier share first.
        assert_eq!(amounts(-1, &[50, 50]), vec![-1, 0]);
        assert_eq!(amounts(7, &[50, 50]), vec![4, 3]);
        assert_eq!(amounts(-7, &[50, 50]), vec![-4, -3]);
        assert_eq!(amounts(1, &[50, 50]), vec![1, 0]);
        assert_eq!(amounts(2, &[34, 33, 33]), vec![1, 1, 0]);
        assert_eq!(amounts(0, &[50, 50]), vec![0, 0]);
        // .67, .33 over 3 units: remainders decide, not the order.
        assert_eq!(amounts(1, &[33, 67]), vec![0, 1]);
        assert_eq!(amounts(-101, &[10, 20, 30, 40]), vec![-10, -20, -30, -41]);
        // Extremes do not overflow.
        assert_eq!(
            amounts(i64::MIN, &[50, 50]),
            vec![i64::MIN / 2, i64::MIN / 2]
        );
        let max = amounts(i64::MAX, &[1, 99]);
        assert_eq!(max.iter().sum::<i64>(), i64::MAX);
        // Shares not adding up to 100 are weighed by their sum and still add up.
        assert_eq!(amounts(10, &[1, 1]), vec![5, 5]);
        assert!(split_amount(10, &[]).is_empty());
        assert_eq!(
            split_amount(10, &shares(&[0, 0])),
            vec![(category(0), 0), (category(1), 0)]
        );
        for amount in [-99_999, -1001, -3, 3, 17, 1_000_003] {
            amounts(amount, &[13, 29, 7, 51]);
            amounts(amount, &[10; 10]);
        }
    }

    #[test]
    fn json_reads_the_api_shape() {
        let body = serde_json::json!({
            "conditions": {
                "items": [
                    { "field": "merchant", "op": "starts_with", "value": "AMZN" },
                    { "field": "day_of_month", "op": "between", "min": 1, "max": 5 },
                    { "field": "amount", "op": "sign", "sign": "negative", "value": null }
                ]
            },
            "actions": { "merchant": "Amazon", "tags": ["shopping"] }
        });
        let conditions: Conditions = serde_json::from_value(body["conditions"].clone()).unwrap();
        let actions: Actions = serde_json::from_value(body["actions"].clone()).unwrap();
        assert_eq!(conditions.r#match, Match::All);
        assert_eq!(conditions.items[0].op, Operator::StartsWith);
        assert_eq!(conditions.items[1].field, Field::DayOfMonth);
        assert_eq!(conditions.items[2].sign, Some(Sign::Negative));
        assert_eq!(actions.category_id, None);
        assert!(validate(&conditions, &actions).is_ok());

        let any: Conditions =
            serde_json::from_value(serde_json::json!({ "match": "any", "items": [] })).unwrap();
        assert_eq!(any.r#match, Match::Any);
        let null: Conditions =
            serde_json::from_value(serde_json::json!({ "match": null, "items": [] })).unwrap();
        assert_eq!(null.r#match, Match::All);
        let out = serde_json::to_value(&any).unwrap();
        assert_eq!(out, serde_json::json!({ "match": "any", "items": [] }));

        for unknown in [
            serde_json::json!({ "items": [], "mode": "any" }),
            serde_json::json!({ "items": [{ "field": "amount", "op": "sign", "signs": "negative" }] }),
            serde_json::json!({ "match": "some", "items": [] }),
        ] {
            assert!(
                serde_json::from_value::<Conditions>(unknown.clone()).is_err(),
                "{unknown}"
            );
        }
        assert!(
            serde_json::from_value::<Actions>(serde_json::json!({ "category": null })).is_err()
        );
        assert!(
            serde_json::from_value::<SplitShare>(
                serde_json::json!({ "category_id": category(1), "percent": 50, "memo": "" })
            )
            .is_err()
        );
    }

    #[test]
    fn the_spec_declares_the_limits() {
        use poem_openapi::{registry::Registry, types::Type};
        let mut registry = Registry::new();
        <Conditions as Type>::register(&mut registry);
        <Actions as Type>::register(&mut registry);
        let schema = |name: &str| serde_json::to_value(&registry.schemas[name]).unwrap();
        let conditions = schema("RuleConditions");
        assert_eq!(conditions["required"], serde_json::json!(["items"]));
        assert_eq!(conditions["properties"]["items"]["minItems"], 1);
        assert_eq!(conditions["properties"]["items"]["maxItems"], 20);
        assert!(
            conditions["properties"]["match"].is_object(),
            "{conditions}"
        );
        let condition = schema("RuleCondition");
        assert_eq!(condition["properties"]["value"]["maxLength"], 200);
        assert_eq!(condition["properties"]["days"]["items"]["type"], "integer");
        assert_eq!(condition["properties"]["days"]["maxItems"], 31);
        let actions = schema("RuleActions");
        assert_eq!(actions["properties"]["splits"]["minItems"], 2);
        assert_eq!(actions["properties"]["splits"]["maxItems"], 10);
        assert_eq!(actions["properties"]["tags"]["maxItems"], 20);
        assert_eq!(actions["properties"]["merchant"]["maxLength"], 200);
        let share = schema("RuleSplitShare");
        assert_eq!(share["properties"]["percent"]["minimum"], 1.0);
        assert_eq!(share["properties"]["percent"]["maximum"], 100.0);
        let field = schema("RuleField");
        assert!(
            field["enum"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("day_of_month"))
        );
    }
}
