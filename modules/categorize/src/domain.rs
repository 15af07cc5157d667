//! The categorization's own types: rules as stored and shown, approvals, the tenant's
//! settings, and what a run is asked to do.

use chrono::{DateTime, NaiveDate, Utc};
use ledger::{Neighbour, Transaction};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rules::{Actions, Conditions};

/// A rule of the tenant: conditions on a transaction, and what to do when they hold.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Rule {
    pub id: Uuid,
    pub name: String,
    /// Rules run in ascending position: the first that sets a category decides.
    pub position: i32,
    pub enabled: bool,
    pub conditions: Conditions,
    pub actions: Actions,
    /// How many transactions it has decided or changed.
    pub hits: i64,
    pub last_hit_at: Option<DateTime<Utc>>,
    /// For `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new rule, checked (its conditions compile).
#[derive(Debug, Clone)]
pub struct NewRule {
    pub name: String,
    /// At the end when absent.
    pub position: Option<i32>,
    pub enabled: bool,
    pub conditions: Conditions,
    pub actions: Actions,
}

/// Changes to a rule; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RuleChanges {
    pub name: Option<String>,
    pub position: Option<i32>,
    pub enabled: Option<bool>,
    pub conditions: Option<Conditions>,
    pub actions: Option<Actions>,
}

/// What a rule would match among the tenant's transactions, without writing anything.
#[derive(Debug, Clone, Object)]
pub struct RuleTest {
    /// Live transactions (not transfer legs) it matches.
    pub matched: i64,
    /// Of those, how many a person categorised: applying the rule leaves them as they are.
    pub locked: i64,
    /// Transactions looked at.
    pub scanned: i64,
    /// The newest matches, at most `limit`.
    pub data: Vec<Transaction>,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a person.
    Pending,
    /// A person took the suggestion.
    Approved,
    /// A person chose another category.
    Overridden,
    /// A rule (one written from another decision) or a person's edit of the transaction
    /// decided it.
    Resolved,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Overridden => "overridden",
            ApprovalStatus::Resolved => "resolved",
        }
    }

    pub fn from_db(raw: &str) -> ApprovalStatus {
        match raw {
            "approved" => ApprovalStatus::Approved,
            "overridden" => ApprovalStatus::Overridden,
            "resolved" => ApprovalStatus::Resolved,
            _ => ApprovalStatus::Pending,
        }
    }
}

/// A suggestion below the tenant's confidence threshold, waiting for a person.
#[derive(Debug, Clone, Object, Serialize)]
pub struct Approval {
    pub id: Uuid,
    pub transaction_id: Uuid,
    pub account_id: Uuid,
    /// The suggested category.
    pub category_id: Uuid,
    /// `similarity` or `llm`.
    pub source: String,
    /// 0 to 1, below the tenant's threshold.
    pub confidence: f64,
    /// Why this category was suggested, in words.
    pub reasoning: String,
    pub neighbours: Option<Vec<Neighbour>>,
    pub model: Option<String>,
    pub status: ApprovalStatus,
    pub decided_category_id: Option<Uuid>,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The rule that resolved it, when one did.
    pub resolved_by_rule: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The transaction as it is now (absent when it was deleted).
    pub transaction: Option<Transaction>,
}

/// What a person does with an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DecisionAction {
    /// Take the suggested category.
    Approve,
    /// Take `category_id` instead.
    Override,
}

/// A person's decision on one approval.
#[derive(Debug, Clone)]
pub struct Decision {
    pub action: DecisionAction,
    pub category_id: Option<Uuid>,
    /// Also write the rule that would have decided it (the merchant, or the description's
    /// start, to the chosen category), and let it resolve other waiting approvals.
    pub create_rule: bool,
}

/// What a decision did.
#[derive(Debug, Clone, Object)]
pub struct Decided {
    pub approval: Approval,
    /// The rule written, with `create_rule`.
    pub rule: Option<Rule>,
    /// Other waiting approvals the new rule resolved.
    pub resolved: i64,
}

/// The tenant's categorization settings.
#[derive(Debug, Clone, Object, Serialize)]
pub struct Settings {
    /// Suggestions below it (0–1, default 0.7) wait for a person in approvals.
    pub approval_threshold: f64,
    /// Whether the LLM step may run for this tenant.
    pub llm_enabled: bool,
    /// Whether the platform has an LLM configured at all (read-only).
    pub llm_configured: bool,
    /// The LLM calls a day allows per tenant (read-only; 0 when not configured).
    pub llm_daily_calls: i64,
    /// Calls made today (UTC).
    pub llm_calls_today: i64,
    /// For `If-Match`.
    pub version: i64,
}

/// Which transactions a run over existing ones looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub account_id: Option<Uuid>,
    /// Also those an automation (a rule, the history, the LLM, an import) categorised
    /// before; a person's choice is never redone.
    pub include_categorized: bool,
}

/// What a `categorize.run` job does (its payload: ids only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Run {
    /// The pipeline over transactions that just arrived.
    Arrived { transaction_ids: Vec<Uuid> },
    /// The pipeline over an import's transactions.
    Import { import_id: Uuid },
    /// The pipeline over existing transactions, on demand.
    Filter { filter: RunFilter },
    /// One rule over every existing transaction.
    Rule { rule_id: Uuid },
}
