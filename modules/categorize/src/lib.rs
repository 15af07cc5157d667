//! Categorization (DESIGN.md §9): a pipeline with a fixed order, the first decisive step
//! wins — the tenant's rules, then similarity over its own categorised history, then an
//! LLM when one is configured. Every decision keeps why it was made (on the transaction's
//! `categorization`); doubtful ones wait for a person in approvals, and a person's
//! correction teaches the history or becomes a rule.

mod domain;
mod error;
mod http;
mod jobs;
pub mod llm;
mod pipeline;
pub mod rules;
mod service;
pub mod similarity;
mod store;

pub use domain::{
    Approval, ApprovalStatus, Decided, Decision, DecisionAction, NewRule, Rule, RuleChanges,
    RuleTest, Run, RunFilter, Settings,
};
pub use error::CategorizeError;
pub use http::{CategorizeApi, PERMISSIONS};
pub use jobs::register;
pub use pipeline::{HISTORY, RunSummary};
pub use service::{Categorizer, DEFAULT_THRESHOLD, Explanation, QUEUE, QueueOnArrival, RUN_JOB};
