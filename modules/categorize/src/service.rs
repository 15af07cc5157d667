//! The categorization's rules. Every function takes the caller's transaction first; the
//! pipeline's run ([`Categorizer::run`], in pipeline.rs) opens its own, one per batch.

use std::{cmp::Reverse, collections::BinaryHeap, sync::Arc};

use audit::{NewEvent, Record};
use jobs::{Enqueue, NewJob};
use kernel::{Actor, Keyset, Page, TenantTx, concurrency};
use ledger::{Arrival, Ledger, Neighbour};
use serde_json::json;
use uuid::Uuid;

use crate::{
    CategorizeError,
    domain::{
        Approval, ApprovalStatus, Decided, Decision, DecisionAction, NewRule, Rule, RuleChanges,
        RuleTest, Run, RunFilter, Settings,
    },
    llm::LlmClient,
    rules::{
        self, Actions, Candidate, CompiledRule, Condition, Conditions, Field, Match, Operator,
    },
    store,
};

/// The job that runs the pipeline (or one rule) over transactions.
pub const RUN_JOB: &str = "categorize.run";
/// Its queue.
pub const QUEUE: &str = "categorize";
/// The threshold of a tenant that set none.
pub const DEFAULT_THRESHOLD: f64 = 0.7;

/// The categorization service.
#[derive(Clone)]
pub struct Categorizer {
    pub(crate) ledger: Ledger,
    pub(crate) llm: Option<LlmClient>,
}

/// Queues the pipeline for transactions that arrive uncategorised, in the transaction that
/// writes them (the ledger calls it; see [`ledger::Arrivals`]).
pub struct QueueOnArrival;

impl ledger::Arrivals for QueueOnArrival {
    fn arrived(&self, tx: &mut TenantTx, arrival: Arrival) {
        let run = match arrival {
            Arrival::Transactions(transaction_ids) => Run::Arrived { transaction_ids },
            Arrival::Import(import_id) => Run::Import { import_id },
        };
        tx.enqueue(run_job(&run));
    }

    fn chosen_by_person<'a>(
        &'a self,
        tx: &'a mut TenantTx,
        transaction_id: Uuid,
    ) -> futures_util::future::BoxFuture<'a, Result<(), kernel::Problem>> {
        Box::pin(async move {
            let tenant = tx.tenant_id();
            store::resolve_for(tx.conn(), tenant, &[transaction_id], None).await?;
            Ok(())
        })
    }
}

pub(crate) fn run_job(run: &Run) -> NewJob {
    NewJob::new(QUEUE, RUN_JOB, json!(run))
}

/// What a transaction's category rests on, in words.
#[derive(Debug, Clone, poem_openapi::Object)]
pub struct Explanation {
    pub transaction_id: Uuid,
    pub category_id: Option<Uuid>,
    /// The decision as stored; `null` when nothing decided yet.
    pub categorization: Option<ledger::Categorization>,
    /// The decision (or its absence) in words a person understands.
    pub explanation: String,
    /// The suggestion waiting for a person, when there is one.
    pub approval: Option<Approval>,
}

impl Categorizer {
    pub fn new(ledger: Ledger) -> Categorizer {
        Categorizer { ledger, llm: None }
    }

    /// The pipeline with its LLM step (`BALANCE_LLM_*` configured).
    pub fn with_llm(self, llm: LlmClient) -> Categorizer {
        Categorizer {
            llm: Some(llm),
            ..self
        }
    }

    /// The hook the ledger calls when transactions arrive uncategorised.
    pub fn arrivals() -> Arc<dyn ledger::Arrivals> {
        Arc::new(QueueOnArrival)
    }

    // Rules.

    /// The tenant's rules in the order they run.
    pub async fn rules(&self, tx: &mut TenantTx) -> Result<Vec<Rule>, CategorizeError> {
        let tenant = tx.tenant_id();
        store::rules(tx.conn(), tenant)
            .await?
            .into_iter()
            .map(rule_view)
            .collect()
    }

    pub async fn rule(&self, tx: &mut TenantTx, id: Uuid) -> Result<Rule, CategorizeError> {
        let tenant = tx.tenant_id();
        rule_view(
            store::rule(tx.conn(), tenant, id)
                .await?
                .ok_or(CategorizeError::NotFound)?,
        )
    }

    /// Writes a rule (it runs from the next arrival on; `…/apply` runs it over existing
    /// transactions). Its conditions must compile and its categories be the tenant's.
    pub async fn create_rule(
        &self,
        tx: &mut TenantTx,
        new: NewRule,
    ) -> Result<Rule, CategorizeError> {
        rules::validate(&new.conditions, &new.actions)?;
        self.check_actions(tx, &new.actions).await?;
        let tenant = tx.tenant_id();
        let position = match new.position {
            Some(p) => p,
            None => store::next_position(tx.conn(), tenant).await?,
        };
        let id = Uuid::now_v7();
        let row = store::insert_rule(
            tx.conn(),
            tenant,
            store::NewRuleRow {
                id,
                name: new.name.trim(),
                position,
                enabled: new.enabled,
                conditions: json!(new.conditions),
                actions: json!(new.actions),
            },
        )
        .await
        .map_err(name_taken)?;
        let rule = rule_view(row)?;
        tx.record(
            NewEvent::new("rule.created")
                .resource("rule", id)
                .payload(json!({"rule": rule})),
        );
        Ok(rule)
    }

    /// Changes a rule; `expected` is the `If-Match` version.
    pub async fn update_rule(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        expected: Option<i64>,
        changes: RuleChanges,
    ) -> Result<Rule, CategorizeError> {
        let current = self.rule(tx, id).await?;
        concurrency::check(expected, current.version)?;
        let conditions = changes.conditions.unwrap_or(current.conditions.clone());
        let actions = changes.actions.unwrap_or(current.actions.clone());
        rules::validate(&conditions, &actions)?;
        self.check_actions(tx, &actions).await?;
        let tenant = tx.tenant_id();
        let name = changes
            .name
            .map_or(current.name.clone(), |n| n.trim().to_string());
        let row = store::update_rule(
            tx.conn(),
            tenant,
            id,
            store::NewRuleRow {
                id,
                name: &name,
                position: changes.position.unwrap_or(current.position),
                enabled: changes.enabled.unwrap_or(current.enabled),
                conditions: json!(conditions),
                actions: json!(actions),
            },
        )
        .await
        .map_err(name_taken)?;
        let rule = rule_view(row)?;
        tx.record(
            NewEvent::new("rule.updated")
                .resource("rule", id)
                .payload(json!({"from": current, "to": rule})),
        );
        Ok(rule)
    }

    /// Deletes a rule; what it decided stays decided (and says which rule it was).
    pub async fn delete_rule(&self, tx: &mut TenantTx, id: Uuid) -> Result<(), CategorizeError> {
        let current = self.rule(tx, id).await?;
        let tenant = tx.tenant_id();
        store::delete_rule(tx.conn(), tenant, id).await?;
        tx.record(
            NewEvent::new("rule.deleted")
                .resource("rule", id)
                .payload(json!({"name": current.name, "hits": current.hits})),
        );
        Ok(())
    }

    /// Which existing transactions a rule would match: how many, how many of those a
    /// person categorised (applying leaves them), and the newest `limit`. Writes nothing.
    pub async fn test_rule(
        &self,
        tx: &mut TenantTx,
        conditions: &Conditions,
        actions: &Actions,
        limit: usize,
    ) -> Result<RuleTest, CategorizeError> {
        let compiled = CompiledRule::compile(Uuid::nil(), "test", conditions, actions)?;
        let (mut matched, mut locked, mut scanned) = (0i64, 0i64, 0i64);
        // The newest `limit` matches: a min-heap by (date, id) of the best seen so far.
        let mut newest: BinaryHeap<Reverse<(chrono::NaiveDate, Uuid)>> = BinaryHeap::new();
        self.ledger
            .scan_each(tx, |t| {
                scanned += 1;
                if compiled.matches(&candidate(&t)).is_none() {
                    return;
                }
                matched += 1;
                if t.category_locked {
                    locked += 1;
                }
                newest.push(Reverse((t.date, t.id)));
                if newest.len() > limit {
                    newest.pop();
                }
            })
            .await?;
        let first: Vec<Uuid> = newest.into_iter().map(|Reverse((_, id))| id).collect();
        let data = self.ledger.transactions_by_ids(tx, &first).await?;
        Ok(RuleTest {
            matched,
            locked,
            scanned,
            data,
        })
    }

    /// Queues a rule's run over every existing transaction (a person's choices stay).
    pub async fn apply_rule(&self, tx: &mut TenantTx, id: Uuid) -> Result<Uuid, CategorizeError> {
        let rule = self.rule(tx, id).await?;
        let job = tx.enqueue(run_job(&Run::Rule { rule_id: id }));
        tx.record(
            NewEvent::new("rule.applied")
                .resource("rule", id)
                .payload(json!({"name": rule.name, "job_id": job})),
        );
        Ok(job)
    }

    /// Queues the pipeline over existing transactions (e.g. every uncategorised one since
    /// June).
    pub async fn categorize(
        &self,
        tx: &mut TenantTx,
        filter: RunFilter,
    ) -> Result<Uuid, CategorizeError> {
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from > to
        {
            return Err(CategorizeError::invalid("filter.to", "is before `from`"));
        }
        if let Some(account) = filter.account_id {
            self.ledger
                .account(tx, account)
                .await
                .map_err(|e| match e {
                    ledger::LedgerError::NotFound => CategorizeError::invalid(
                        "filter.account_id",
                        "names no account of this tenant that you can see",
                    ),
                    other => other.into(),
                })?;
        }
        Ok(tx.enqueue(run_job(&Run::Filter { filter })))
    }

    /// The categories of `actions` are the tenant's.
    async fn check_actions(
        &self,
        tx: &mut TenantTx,
        actions: &Actions,
    ) -> Result<(), CategorizeError> {
        let mut wanted: Vec<(String, Uuid)> = Vec::new();
        if let Some(c) = actions.category_id {
            wanted.push(("actions.category_id".into(), c));
        }
        for (i, share) in actions.splits.iter().flatten().enumerate() {
            wanted.push((
                format!("actions.splits[{i}].category_id"),
                share.category_id,
            ));
        }
        for (field, id) in wanted {
            self.ledger.category(tx, id).await.map_err(|e| match e {
                ledger::LedgerError::NotFound => {
                    CategorizeError::invalid(&field, "is no category of this tenant")
                }
                other => other.into(),
            })?;
        }
        Ok(())
    }

    // Approvals.

    /// Approvals in `status` (those of accounts the caller can see), newest first, each
    /// with its transaction as it is now.
    pub async fn approvals(
        &self,
        tx: &mut TenantTx,
        status: ApprovalStatus,
        page: &Keyset,
    ) -> Result<Page<Approval>, CategorizeError> {
        let tenant = tx.tenant_id();
        let rows = store::approvals(
            tx.conn(),
            tenant,
            status.as_str(),
            page.after(),
            page.fetch_limit(),
        )
        .await?;
        let page = page.page(rows, |r| (r.created_at, r.id));
        let ids: Vec<Uuid> = page.data.iter().map(|r| r.transaction_id).collect();
        let mut transactions = self.ledger.transactions_by_ids(tx, &ids).await?;
        Ok(page.map(|row| {
            let at = transactions.iter().position(|t| t.id == row.transaction_id);
            let transaction = at.map(|i| transactions.swap_remove(i));
            approval_view(row, transaction)
        }))
    }

    /// A person's decision: approve the suggestion or override it. Either is the person's
    /// choice of category (locked, and the history learns it); with `create_rule`, the
    /// rule that would have decided it is written and resolves the other waiting
    /// approvals it matches.
    pub async fn decide(
        &self,
        tx: &mut TenantTx,
        id: Uuid,
        decision: Decision,
    ) -> Result<Decided, CategorizeError> {
        let tenant = tx.tenant_id();
        let row = store::lock_approval(tx.conn(), tenant, id)
            .await?
            .ok_or(CategorizeError::NotFound)?;
        let status = ApprovalStatus::from_db(&row.status);
        if status != ApprovalStatus::Pending {
            return Err(CategorizeError::Decided(status.as_str()));
        }
        let (category, closed, reasoning) = match decision.action {
            DecisionAction::Approve => {
                if decision.category_id.is_some_and(|c| c != row.category_id) {
                    return Err(CategorizeError::invalid(
                        "category_id",
                        "is not the suggestion: to choose another category, override",
                    ));
                }
                (
                    row.category_id,
                    ApprovalStatus::Approved,
                    format!("Approved by a person. The suggestion: {}", row.reasoning),
                )
            }
            DecisionAction::Override => {
                let Some(category) = decision.category_id else {
                    return Err(CategorizeError::invalid(
                        "category_id",
                        "is required to override",
                    ));
                };
                (
                    category,
                    ApprovalStatus::Overridden,
                    "Chosen by a person, over a suggestion.".to_string(),
                )
            }
        };
        self.ledger
            .category(tx, category)
            .await
            .map_err(|e| match e {
                ledger::LedgerError::NotFound => CategorizeError::invalid(
                    "category_id",
                    "is no category of this tenant (it may have been deleted)",
                ),
                other => other.into(),
            })?;
        let by = match tx.context().actor {
            Actor::User(user) | Actor::Telegram(user) => Some(user.as_uuid()),
            _ => None,
        };
        // Closed first: the person's choice below settles what still waits about the
        // transaction, and this approval is decided, not merely settled.
        store::close_approvals(
            tx.conn(),
            tenant,
            &[id],
            closed.as_str(),
            Some(category),
            by,
            None,
        )
        .await?;
        let transaction = self
            .ledger
            .choose_category(tx, row.transaction_id, category, reasoning)
            .await
            .map_err(|e| match e {
                ledger::LedgerError::NotFound => CategorizeError::NotFound,
                other => other.into(),
            })?;
        let (rule, resolved) = if decision.create_rule {
            let rule = self.rule_from(tx, &transaction, category).await?;
            let resolved = self.resolve_waiting(tx, &rule).await?;
            (Some(rule), resolved)
        } else {
            (None, 0)
        };
        tx.record(
            NewEvent::new("approval.decided")
                .resource("approval", id)
                .payload(json!({
                    "transaction_id": row.transaction_id,
                    "action": closed.as_str(),
                    "suggested": row.category_id,
                    "category_id": category,
                    "rule_id": rule.as_ref().map(|r| r.id),
                    "resolved": resolved,
                })),
        );
        let row = store::lock_approval(tx.conn(), tenant, id)
            .await?
            .ok_or(CategorizeError::NotFound)?;
        Ok(Decided {
            approval: approval_view(row, Some(transaction)),
            rule,
            resolved,
        })
    }

    /// One decision for many approvals, all or nothing: one not found (or not visible) or
    /// decided already fails them all (the caller's transaction is not committed).
    pub async fn decide_all(
        &self,
        tx: &mut TenantTx,
        ids: &[Uuid],
        action: DecisionAction,
        category_id: Option<Uuid>,
    ) -> Result<Vec<Decided>, CategorizeError> {
        let mut decided = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let decision = Decision {
                action,
                category_id,
                create_rule: false,
            };
            decided.push(self.decide(tx, *id, decision).await.map_err(|e| match e {
                CategorizeError::NotFound => CategorizeError::invalid(
                    &format!("approval_ids[{i}]"),
                    "names no approval of this tenant that you can see",
                ),
                other => other,
            })?);
        }
        Ok(decided)
    }

    /// The rule that would have decided `transaction`: its merchant (or, without one, the
    /// start of its description) to `category`, after the tenant's other rules.
    async fn rule_from(
        &self,
        tx: &mut TenantTx,
        transaction: &ledger::Transaction,
        category: Uuid,
    ) -> Result<Rule, CategorizeError> {
        let (field, op, value, label) = match transaction.merchant.as_deref() {
            Some(m) => (
                Field::Merchant,
                Operator::Equals,
                m.to_string(),
                m.to_string(),
            ),
            None => {
                let start: String = transaction
                    .description
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ");
                if start.is_empty() {
                    return Err(CategorizeError::invalid(
                        "create_rule",
                        "the transaction has neither a merchant nor a description to match",
                    ));
                }
                (
                    Field::Description,
                    Operator::StartsWith,
                    start.clone(),
                    start,
                )
            }
        };
        let mut name: String = format!("{label} (from an approval)")
            .chars()
            .take(200)
            .collect();
        let taken: Vec<String> = self
            .rules(tx)
            .await?
            .into_iter()
            .map(|r| r.name.to_lowercase())
            .collect();
        let mut n = 2;
        while taken.contains(&name.to_lowercase()) {
            name = format!("{label} (from an approval {n})")
                .chars()
                .take(200)
                .collect();
            n += 1;
        }
        let value: String = value.chars().take(rules::MAX_TEXT).collect();
        self.create_rule(
            tx,
            NewRule {
                name,
                position: None,
                enabled: true,
                conditions: Conditions {
                    r#match: Match::All,
                    items: vec![Condition::text(field, op, value)],
                },
                actions: Actions::category(category),
            },
        )
        .await
    }

    /// Applies `rule` to the transactions of the waiting approvals it matches; those
    /// approvals are resolved. Returns how many.
    async fn resolve_waiting(
        &self,
        tx: &mut TenantTx,
        rule: &Rule,
    ) -> Result<i64, CategorizeError> {
        let tenant = tx.tenant_id();
        let compiled = CompiledRule::compile(rule.id, &rule.name, &rule.conditions, &rule.actions)?;
        let waiting = store::all_waiting(tx.conn(), tenant).await?;
        let ids: Vec<Uuid> = waiting.iter().map(|a| a.transaction_id).collect();
        let mut changes = Vec::new();
        let categories = crate::pipeline::Names::load(&self.ledger, tx).await?;
        for chunk in ids.chunks(1_000) {
            for c in self.ledger.candidates(tx, chunk).await? {
                if let Some(reasoning) = compiled.matches(&candidate(&c)) {
                    changes.push(crate::pipeline::rule_change(
                        &compiled,
                        &c,
                        reasoning,
                        &categories,
                    ));
                }
            }
        }
        let applied = self.ledger.apply_automation(tx, &changes).await?;
        let resolved =
            store::resolve_for(tx.conn(), tenant, &applied.categorized, Some(rule.id)).await?;
        if !applied.categorized.is_empty() {
            store::record_hits(
                tx.conn(),
                tenant,
                &[rule.id],
                &[applied.categorized.len() as i64],
            )
            .await?;
        }
        Ok(resolved as i64)
    }

    /// The waiting approvals of one transaction, if any.
    pub async fn approval_of(
        &self,
        tx: &mut TenantTx,
        transaction_id: Uuid,
    ) -> Result<Option<Approval>, CategorizeError> {
        let tenant = tx.tenant_id();
        Ok(store::waiting_of(tx.conn(), tenant, transaction_id)
            .await?
            .map(|row| approval_view(row, None)))
    }

    /// Why a transaction has its category, in words.
    pub async fn explain(
        &self,
        tx: &mut TenantTx,
        transaction_id: Uuid,
    ) -> Result<Explanation, CategorizeError> {
        let t = self
            .ledger
            .transaction(tx, transaction_id)
            .await
            .map_err(|e| match e {
                ledger::LedgerError::NotFound => CategorizeError::NotFound,
                other => other.into(),
            })?;
        let approval = self.approval_of(tx, transaction_id).await?;
        let explanation = match (&t.categorization, &approval) {
            (_, Some(a)) => format!(
                "Waiting for a person to approve a suggestion ({:.0}% sure): {}",
                a.confidence * 100.0,
                a.reasoning
            ),
            (Some(c), None) if t.category_id.is_some() || !t.splits.is_empty() => {
                c.reasoning.clone()
            }
            _ if !t.splits.is_empty() => "Split by a person.".to_string(),
            _ if t.category_id.is_some() => {
                "Categorised before its decisions were recorded.".to_string()
            }
            _ => "Not categorised yet: no rule matched, and nothing in the tenant's history was alike enough."
                .to_string(),
        };
        Ok(Explanation {
            transaction_id,
            category_id: t.category_id,
            categorization: t.categorization,
            explanation,
            approval,
        })
    }

    // Settings.

    pub async fn settings(&self, tx: &mut TenantTx) -> Result<Settings, CategorizeError> {
        let tenant = tx.tenant_id();
        let row = store::settings(tx.conn(), tenant).await?;
        let today = chrono::Utc::now().date_naive();
        let calls = store::calls_on(tx.conn(), tenant, today).await?;
        Ok(self.settings_view(row, calls))
    }

    /// Sets the approval threshold and whether the LLM step runs; `expected` is the
    /// `If-Match` version (1 before the first change).
    pub async fn put_settings(
        &self,
        tx: &mut TenantTx,
        expected: Option<i64>,
        approval_threshold: f64,
        llm_enabled: bool,
    ) -> Result<Settings, CategorizeError> {
        if !(0.0..=1.0).contains(&approval_threshold) || approval_threshold.is_nan() {
            return Err(CategorizeError::invalid(
                "approval_threshold",
                "must be between 0 and 1",
            ));
        }
        let current = self.settings(tx).await?;
        concurrency::check(expected, current.version)?;
        let tenant = tx.tenant_id();
        let row = store::put_settings(tx.conn(), tenant, approval_threshold, llm_enabled).await?;
        // Audit payloads hold integers: the threshold in basis points.
        let bp = |t: f64| (t * 10_000.0).round() as i64;
        tx.record(NewEvent::new("categorization.settings_changed").payload(json!({
            "approval_threshold_bp": {"from": bp(current.approval_threshold), "to": bp(approval_threshold)},
            "llm_enabled": {"from": current.llm_enabled, "to": llm_enabled},
        })));
        Ok(self.settings_view(Some(row), current.llm_calls_today))
    }

    fn settings_view(&self, row: Option<store::SettingsRow>, calls: i64) -> Settings {
        let (threshold, llm_enabled, version) = row.map_or((DEFAULT_THRESHOLD, true, 1), |r| {
            (r.approval_threshold, r.llm_enabled, r.version)
        });
        Settings {
            approval_threshold: threshold,
            llm_enabled,
            llm_configured: self.llm.is_some(),
            llm_daily_calls: self.llm.as_ref().map_or(0, |l| i64::from(l.daily_calls())),
            llm_calls_today: calls,
            version,
        }
    }
}

/// A ledger candidate as the rules see it.
pub(crate) fn candidate(t: &ledger::Candidate) -> Candidate<'_> {
    Candidate {
        merchant: t.merchant.as_deref(),
        description: &t.description,
        amount: t.amount,
        account_id: t.account_id,
        currency: &t.currency,
        date: t.date,
    }
}

fn name_taken(e: sqlx::Error) -> CategorizeError {
    match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("categorization_rules_name") => {
            CategorizeError::RuleNameTaken
        }
        _ => e.into(),
    }
}

fn rule_view(row: store::RuleRow) -> Result<Rule, CategorizeError> {
    let stored = |e: serde_json::Error| {
        tracing::error!(rule = %row.id, error = %e, "a stored rule does not read back");
        CategorizeError::Problem(kernel::Problem::internal())
    };
    Ok(Rule {
        id: row.id,
        name: row.name,
        position: row.position,
        enabled: row.enabled,
        conditions: serde_json::from_value(row.conditions).map_err(stored)?,
        actions: serde_json::from_value(row.actions).map_err(stored)?,
        hits: row.hits,
        last_hit_at: row.last_hit_at,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub(crate) fn approval_view(
    row: store::ApprovalRow,
    transaction: Option<ledger::Transaction>,
) -> Approval {
    Approval {
        id: row.id,
        transaction_id: row.transaction_id,
        account_id: row.account_id,
        category_id: row.category_id,
        source: row.source,
        confidence: row.confidence,
        reasoning: row.reasoning,
        neighbours: row
            .neighbours
            .and_then(|n| serde_json::from_value::<Vec<Neighbour>>(n).ok()),
        model: row.model,
        status: ApprovalStatus::from_db(&row.status),
        decided_category_id: row.decided_category_id,
        decided_by: row.decided_by,
        decided_at: row.decided_at,
        resolved_by_rule: row.resolved_by_rule,
        created_at: row.created_at,
        transaction,
    }
}
