//! The pipeline's run (DESIGN.md §9): for each transaction, the tenant's rules in order
//! (the first that sets a category decides; tags and merchant renames of the ones before
//! it apply too), then the similarity over the tenant's own history, then the LLM when one
//! is configured. A decision below the tenant's threshold waits in approvals instead.
//!
//! A run reads its batch in one transaction, asks the LLM with none open (a slow model
//! never holds a connection or a lock), and writes the batch's decisions in one more: the
//! ledger skips anything a person locked in between.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use audit::{NewEvent, Record};
use chrono::Utc;
use kernel::{Actor, Db, RequestContext, TenantId, TenantTx};
use ledger::{AutoChange, Categorization, Ledger, Selection, Split};
use serde_json::json;
use uuid::Uuid;

use crate::{
    CategorizeError, Categorizer,
    domain::Run,
    llm::{LlmError, LlmItem, MAX_BATCH},
    rules::{self, CompiledRule},
    service::candidate,
    similarity::{Basis, Example, ExampleSource, History, Suggestion, merchant_key},
    store,
};

/// The history the similarity step learns from: the tenant's newest categorised
/// transactions.
pub const HISTORY: i64 = 50_000;
/// Transactions decided and written together.
const BATCH: usize = 1_000;

/// What a run did, per step.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    pub considered: usize,
    pub rule: usize,
    pub similarity: usize,
    pub llm: usize,
    pub approvals: usize,
    pub undecided: usize,
    /// Left alone: a person locked them meanwhile, or they were deleted.
    pub skipped: usize,
    pub llm_calls: usize,
}

/// The tenant's categories by id, with the names shown in explanations and offered to the
/// LLM.
pub(crate) struct Names {
    names: HashMap<Uuid, String>,
    by_name: HashMap<String, Uuid>,
    offered: Vec<String>,
    transfer: Option<Uuid>,
}

impl Names {
    pub(crate) async fn load(ledger: &Ledger, tx: &mut TenantTx) -> Result<Names, CategorizeError> {
        let categories = ledger.all_categories(tx).await?;
        let parents: HashMap<Uuid, String> =
            categories.iter().map(|c| (c.id, c.name.clone())).collect();
        let mut names = HashMap::new();
        let mut by_name = HashMap::new();
        let mut offered = Vec::new();
        let mut transfer = None;
        for c in &categories {
            let name = match c.parent_id.and_then(|p| parents.get(&p)) {
                Some(parent) => format!("{parent} › {}", c.name),
                None => c.name.clone(),
            };
            if c.archived_at.is_none() {
                if c.kind == ledger::CategoryKind::Transfer && transfer.is_none() {
                    transfer = Some(c.id);
                }
                offered.push(name.clone());
                by_name.insert(name.clone(), c.id);
            }
            names.insert(c.id, name);
        }
        Ok(Names {
            names,
            by_name,
            offered,
            transfer,
        })
    }

    /// Whether the category exists (archived ones do; deleted ones do not).
    pub(crate) fn exists(&self, id: Uuid) -> bool {
        self.names.contains_key(&id)
    }

    /// Whether every category a rule would set exists: a rule whose category was deleted
    /// since decides nothing (the write would fail the whole batch).
    pub(crate) fn can_apply(&self, actions: &crate::rules::Actions) -> bool {
        actions.category_id.is_none_or(|c| self.exists(c))
            && actions
                .splits
                .iter()
                .flatten()
                .all(|s| self.exists(s.category_id))
    }

    pub(crate) fn name(&self, id: Uuid) -> &str {
        self.names
            .get(&id)
            .map_or("a deleted category", String::as_str)
    }
}

/// The change a matching rule makes to a transaction.
pub(crate) fn rule_change(
    rule: &CompiledRule,
    c: &ledger::Candidate,
    reasoning: String,
    names: &Names,
) -> AutoChange {
    let actions = rule.actions();
    let mut change = AutoChange {
        transaction_id: c.id,
        category_id: None,
        splits: Vec::new(),
        categorization: None,
        add_tags: actions.tags.clone().unwrap_or_default(),
        merchant: actions.merchant.clone(),
    };
    let decided = if let Some(category) = actions.category_id {
        change.category_id = Some(category);
        Some(format!(
            "{reasoning}, so it is filed under {}.",
            names.name(category)
        ))
    } else if let Some(shares) = &actions.splits {
        // An amount too small to give every share a minor unit leaves zero parts, which
        // are no parts at all; a lone part left is a plain category.
        let mut parts: Vec<Split> = rules::split_amount(c.amount, shares)
            .into_iter()
            .filter(|(_, amount)| *amount != 0)
            .map(|(category_id, amount)| Split {
                category_id,
                amount,
                memo: None,
            })
            .collect();
        if parts.len() <= 1 {
            // A zero amount has no parts at all: the first share's category carries it.
            change.category_id = parts
                .pop()
                .map(|p| p.category_id)
                .or_else(|| shares.first().map(|s| s.category_id));
        } else {
            change.splits = parts;
        }
        let parts: Vec<String> = shares
            .iter()
            .map(|s| format!("{}% {}", s.percent, names.name(s.category_id)))
            .collect();
        Some(format!(
            "{reasoning}, so it is split: {}.",
            parts.join(", ")
        ))
    } else if actions.transfer == Some(true) {
        names.transfer.map(|transfer| {
            change.category_id = Some(transfer);
            format!(
                "{reasoning}, so it is marked as a transfer ({}).",
                names.name(transfer)
            )
        })
    } else {
        None
    };
    change.categorization = decided.map(|reasoning| Categorization {
        category_id: change.category_id,
        source: "rule".into(),
        confidence: 1.0,
        reasoning,
        rule_id: Some(rule.id),
        neighbours: None,
        model: None,
        decided_at: Utc::now(),
    });
    change
}

/// Why the history suggests a category, in words.
fn similarity_reasoning(s: &Suggestion, merchant: Option<&str>, names: &Names) -> String {
    let category = names.name(s.category_id);
    let were = |n: usize| if n == 1 { "was" } else { "were" };
    match &s.basis {
        Basis::ExactMerchant { .. } => {
            let people = s
                .neighbours
                .iter()
                .filter(|n| n.category_id == s.category_id && n.source == ExampleSource::Person)
                .count();
            let by_people = match people {
                0 => String::new(),
                1 => ", one of them by a person".to_string(),
                n => format!(", {n} of them by a person"),
            };
            format!(
                "{} earlier transaction{} from {} {} filed under {category}{by_people}.",
                s.agreeing,
                if s.agreeing == 1 { "" } else { "s" },
                merchant.unwrap_or("this merchant"),
                were(s.agreeing),
            )
        }
        Basis::Tokens => format!(
            "{} of the {} most alike earlier transactions {} filed under {category}.",
            s.agreeing,
            s.neighbours.len(),
            were(s.agreeing),
        ),
    }
}

fn source_of(raw: Option<&str>) -> ExampleSource {
    match raw {
        Some("person") => ExampleSource::Person,
        Some("rule") => ExampleSource::Rule,
        Some("similarity") => ExampleSource::Similarity,
        Some("llm") => ExampleSource::Llm,
        _ => ExampleSource::Import,
    }
}

/// A suggestion that did not reach the threshold: it waits for a person.
struct Doubt {
    category_id: Uuid,
    source: &'static str,
    confidence: f64,
    reasoning: String,
    neighbours: Option<Vec<ledger::Neighbour>>,
    model: Option<String>,
}

/// One transaction on its way through the steps.
struct Pending {
    candidate: ledger::Candidate,
    change: AutoChange,
    decided: Option<&'static str>,
    doubt: Option<Doubt>,
    waiting: bool,
    /// The rules that matched it, in order.
    matched: Vec<Uuid>,
}

impl Categorizer {
    /// Runs the pipeline (or one rule) over the transactions `run` names, batch by batch,
    /// as the system in `tenant`; audit events name `categorizer` as their source.
    pub async fn run(
        &self,
        db: &Db,
        tenant: TenantId,
        run: &Run,
        job: Option<&jobs::JobContext>,
    ) -> Result<RunSummary, CategorizeError> {
        let request_id = job.map_or_else(|| Uuid::now_v7().to_string(), |j| j.id.to_string());
        let context = Arc::new(RequestContext::background("categorizer", request_id));
        context.scope(self.run_scoped(db, tenant, run, job)).await
    }

    async fn run_scoped(
        &self,
        db: &Db,
        tenant: TenantId,
        run: &Run,
        job: Option<&jobs::JobContext>,
    ) -> Result<RunSummary, CategorizeError> {
        let started = std::time::Instant::now();
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let settings = self.settings(&mut tx).await?;
        let (selection, include, only) = match run {
            Run::Arrived { transaction_ids } => {
                (Selection::Ids(transaction_ids.clone()), false, None)
            }
            Run::Import { import_id } => (Selection::Import(*import_id), false, None),
            Run::Filter { filter } => (
                Selection::Dates {
                    from: filter.from,
                    to: filter.to,
                    account_id: filter.account_id,
                },
                filter.include_categorized,
                None,
            ),
            Run::Rule { rule_id } => (
                Selection::Dates {
                    from: None,
                    to: None,
                    account_id: None,
                },
                true,
                Some(*rule_id),
            ),
        };
        let names = Names::load(&self.ledger, &mut tx).await?;
        let rules: Vec<CompiledRule> = match only {
            Some(id) => {
                let rule = match self.rule(&mut tx, id).await {
                    Ok(rule) => rule,
                    // Deleted since it was queued: nothing to apply.
                    Err(CategorizeError::NotFound) => return Ok(RunSummary::default()),
                    Err(e) => return Err(e),
                };
                vec![CompiledRule::compile(
                    rule.id,
                    &rule.name,
                    &rule.conditions,
                    &rule.actions,
                )?]
            }
            None => self
                .rules(&mut tx)
                .await?
                .into_iter()
                .filter(|r| r.enabled)
                .filter_map(|r| {
                    CompiledRule::compile(r.id, &r.name, &r.conditions, &r.actions).ok()
                })
                .collect(),
        };
        let rules: Vec<CompiledRule> = rules
            .into_iter()
            .filter(|r| {
                let usable = names.can_apply(r.actions());
                if !usable {
                    tracing::warn!(rule = %r.id, "a rule names a deleted category: skipped");
                }
                usable
            })
            .collect();
        let ids = self
            .ledger
            .candidate_ids(&mut tx, &selection, include)
            .await?;
        let mut summary = RunSummary::default();
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(summary);
        }
        let history = if only.is_none() {
            let examples = self
                .ledger
                .categorised_history(&mut tx, HISTORY)
                .await?
                .into_iter()
                .map(|c| Example {
                    transaction_id: c.id,
                    merchant: c.merchant,
                    description: c.description,
                    category_id: c.category_id,
                    source: source_of(c.source.as_deref()),
                })
                .collect();
            History::new(examples)
        } else {
            History::new(Vec::new())
        };
        tx.commit().await?;
        let loaded = started.elapsed();
        let batches = ids.len().div_ceil(BATCH);
        let step = Step {
            tenant,
            rules: &rules,
            history: &history,
            names: &names,
            threshold: settings.approval_threshold,
            llm: settings.llm_enabled && only.is_none(),
            rule_only: only.is_some(),
        };
        for (n, chunk) in ids.chunks(BATCH).enumerate() {
            self.batch(db, &step, chunk, &mut summary).await?;
            if let Some(job) = job {
                job.progress((n + 1) as f32 / batches as f32).await?;
            }
        }
        tracing::info!(
            considered = summary.considered,
            rule = summary.rule,
            similarity = summary.similarity,
            llm = summary.llm,
            approvals = summary.approvals,
            undecided = summary.undecided,
            history = history.len(),
            load_ms = loaded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "categorization run"
        );
        Ok(summary)
    }

    async fn batch(
        &self,
        db: &Db,
        step: &Step<'_>,
        ids: &[Uuid],
        summary: &mut RunSummary,
    ) -> Result<(), CategorizeError> {
        let tenant = step.tenant;
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let candidates = self.ledger.candidates(&mut tx, ids).await?;
        let waiting: HashSet<Uuid> = store::waiting_among(tx.conn(), tenant, ids)
            .await?
            .into_iter()
            .collect();
        tx.commit().await?;

        let mut pending: Vec<Pending> = candidates
            .into_iter()
            .map(|c| step.decide(c, &waiting))
            .collect();
        // Which rules matched which transaction: hits count only what was written.
        let matched: Vec<(Uuid, Vec<Uuid>)> = pending
            .iter()
            .filter(|p| !p.matched.is_empty())
            .map(|p| (p.candidate.id, p.matched.clone()))
            .collect();
        summary.considered += pending.len();

        let mut cache_rows = Vec::new();
        if step.llm
            && let Some(llm) = &self.llm
        {
            let (calls, rows) = self.ask_llm(db, step, llm, &mut pending).await?;
            summary.llm_calls += calls;
            cache_rows = rows;
        }

        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        let mut changes = Vec::new();
        let mut approvals = store::NewApprovals {
            ids: Vec::new(),
            transaction_ids: Vec::new(),
            account_ids: Vec::new(),
            category_ids: Vec::new(),
            sources: Vec::new(),
            confidences: Vec::new(),
            reasonings: Vec::new(),
            neighbours: Vec::new(),
            models: Vec::new(),
        };
        let mut by_source: HashMap<&'static str, usize> = HashMap::new();
        for p in pending {
            if let Some(source) = p.decided {
                *by_source.entry(source).or_default() += 1;
                changes.push(p.change);
                continue;
            }
            let changes_something = !p.change.add_tags.is_empty() || p.change.merchant.is_some();
            if changes_something {
                changes.push(p.change);
            }
            match p.doubt {
                Some(d) if !p.waiting => {
                    approvals.ids.push(Uuid::now_v7());
                    approvals.transaction_ids.push(p.candidate.id);
                    approvals.account_ids.push(p.candidate.account_id);
                    approvals.category_ids.push(d.category_id);
                    approvals.sources.push(d.source.to_string());
                    approvals.confidences.push(d.confidence.clamp(0.0, 1.0));
                    approvals.reasonings.push(d.reasoning);
                    approvals.neighbours.push(d.neighbours.map(|n| json!(n)));
                    approvals.models.push(d.model);
                }
                _ => summary.undecided += 1,
            }
        }
        let deciding_rule: HashMap<Uuid, Option<Uuid>> = changes
            .iter()
            .map(|c| {
                (
                    c.transaction_id,
                    c.categorization.as_ref().and_then(|d| d.rule_id),
                )
            })
            .collect();
        let applied = self.ledger.apply_automation(&mut tx, &changes).await?;
        summary.skipped += applied.skipped.len();
        // A transaction decided now (by a rule of this run: a waiting one is only decided
        // by a rule) no longer waits for a person; the approval names the rule.
        let mut by_rule: HashMap<Option<Uuid>, Vec<Uuid>> = HashMap::new();
        for id in &applied.categorized {
            by_rule
                .entry(deciding_rule.get(id).copied().flatten())
                .or_default()
                .push(*id);
        }
        let mut resolved = 0;
        for (rule, ids) in by_rule {
            resolved += store::resolve_for(tx.conn(), tenant, &ids, rule).await?;
        }
        let skipped: HashSet<Uuid> = applied.skipped.iter().copied().collect();
        let mut hits: HashMap<Uuid, i64> = HashMap::new();
        for (id, rules) in matched {
            if !skipped.contains(&id) {
                for rule in rules {
                    *hits.entry(rule).or_default() += 1;
                }
            }
        }
        let created = if approvals.ids.is_empty() {
            Vec::new()
        } else {
            store::insert_approvals(tx.conn(), tenant, &approvals).await?
        };
        if !hits.is_empty() {
            let (rule_ids, counts): (Vec<Uuid>, Vec<i64>) = hits.into_iter().unzip();
            store::record_hits(tx.conn(), tenant, &rule_ids, &counts).await?;
        }
        for row in &cache_rows {
            store::cache(tx.conn(), tenant, row).await?;
        }
        let count = |s: &str| by_source.get(s).copied().unwrap_or(0);
        summary.rule += count("rule");
        summary.similarity += count("similarity");
        summary.llm += count("llm");
        summary.approvals += created.len();
        tx.record(NewEvent::new("categorization.batch").payload(json!({
            "considered": ids.len(),
            "by_source": {
                "rule": count("rule"),
                "similarity": count("similarity"),
                "llm": count("llm"),
            },
            "categorized": applied.categorized.len(),
            "approvals": created.len(),
            "approvals_resolved": resolved,
            "skipped": applied.skipped.len(),
            "rule_only": step.rule_only,
        })));
        if !created.is_empty() {
            tx.record(NewEvent::new("approval.needed").payload(json!({
                "count": created.len(),
                "approval_ids": created,
            })));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The LLM step for the transactions still undecided: the tenant's cache per merchant
    /// first, then batches of [`MAX_BATCH`] within the day's budget. A failing model
    /// (slow, rate limited, malformed) leaves them undecided for now; it is never fatal.
    async fn ask_llm(
        &self,
        db: &Db,
        step: &Step<'_>,
        llm: &crate::llm::LlmClient,
        pending: &mut [Pending],
    ) -> Result<(usize, Vec<store::CachedRow>), CategorizeError> {
        let open: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].decided.is_none() && !pending[i].waiting)
            .collect();
        if open.is_empty() || step.names.offered.is_empty() {
            return Ok((0, Vec::new()));
        }
        let key_of = |p: &Pending| {
            p.change
                .merchant
                .as_deref()
                .or(p.candidate.merchant.as_deref())
                .and_then(merchant_key)
        };
        let keys: Vec<String> = open.iter().filter_map(|&i| key_of(&pending[i])).collect();
        let mut tx = TenantTx::begin(db, step.tenant, Actor::System).await?;
        let mut answers: HashMap<String, store::CachedRow> =
            store::cached(tx.conn(), step.tenant, &keys)
                .await?
                .into_iter()
                .map(|r| (r.merchant_key.clone(), r))
                .collect();
        tx.commit().await?;

        // One question per merchant key; transactions without a merchant each ask alone.
        let mut asked: Vec<(Option<String>, usize)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for &i in &open {
            match key_of(&pending[i]) {
                Some(key) if answers.contains_key(&key) => {}
                Some(key) => {
                    if seen.insert(key.clone()) {
                        asked.push((Some(key), i));
                    }
                }
                None => asked.push((None, i)),
            }
        }
        let mut fresh: Vec<store::CachedRow> = Vec::new();
        let mut unkeyed: HashMap<usize, store::CachedRow> = HashMap::new();
        let mut calls = 0;
        let today = Utc::now().date_naive();
        let budget = i32::try_from(llm.daily_calls()).unwrap_or(i32::MAX);
        for chunk in asked.chunks(MAX_BATCH) {
            if budget == 0 {
                break;
            }
            let mut tx = TenantTx::begin(db, step.tenant, Actor::System).await?;
            let granted = store::take_call(tx.conn(), step.tenant, today, budget).await?;
            tx.commit().await?;
            if !granted {
                tracing::info!(tenant = %step.tenant, "the LLM's daily budget is spent");
                break;
            }
            calls += 1;
            let items: Vec<LlmItem> = chunk
                .iter()
                .map(|&(_, i)| {
                    let p = &pending[i];
                    LlmItem::new(
                        p.change
                            .merchant
                            .clone()
                            .or_else(|| p.candidate.merchant.clone()),
                        p.candidate.description.clone(),
                        p.candidate.amount,
                    )
                })
                .collect();
            match llm.classify(&items, &step.names.offered).await {
                Ok(result) => {
                    for answer in result {
                        let Some((key, i)) = chunk.get(answer.index) else {
                            continue;
                        };
                        let row = store::CachedRow {
                            merchant_key: key.clone().unwrap_or_default(),
                            category_id: answer
                                .category
                                .as_ref()
                                .and_then(|n| step.names.by_name.get(n).copied()),
                            confidence: answer.confidence,
                            reason: answer.reason,
                            model: llm.model().to_string(),
                        };
                        match key {
                            Some(k) => {
                                answers.insert(k.clone(), row.clone());
                                fresh.push(row);
                            }
                            None => {
                                unkeyed.insert(*i, row);
                            }
                        }
                    }
                }
                Err(e) => {
                    let retry_after = match &e {
                        LlmError::RateLimited { retry_after } => *retry_after,
                        _ => None,
                    };
                    tracing::warn!(
                        tenant = %step.tenant,
                        error = %e,
                        retry_after_s = retry_after.map(|d| d.as_secs()),
                        "the LLM step is skipped for this batch"
                    );
                    break;
                }
            }
        }
        for &i in &open {
            let answer = match key_of(&pending[i]) {
                Some(key) => answers.get(&key),
                None => unkeyed.get(&i),
            };
            let Some(answer) = answer else { continue };
            // A cached answer may name a category deleted since: it answers nothing.
            let Some(category) = answer.category_id.filter(|c| step.names.exists(*c)) else {
                continue;
            };
            let reasoning = format!(
                "The language model ({}) filed it under {}: {}",
                answer.model,
                step.names.name(category),
                answer.reason
            );
            let p = &mut pending[i];
            if answer.confidence >= step.threshold {
                p.change.category_id = Some(category);
                p.change.categorization = Some(Categorization {
                    category_id: Some(category),
                    source: "llm".into(),
                    confidence: answer.confidence,
                    reasoning,
                    rule_id: None,
                    neighbours: None,
                    model: Some(answer.model.clone()),
                    decided_at: Utc::now(),
                });
                p.decided = Some("llm");
                p.doubt = None;
            } else if p
                .doubt
                .as_ref()
                .is_none_or(|d| d.confidence < answer.confidence)
            {
                p.doubt = Some(Doubt {
                    category_id: category,
                    source: "llm",
                    confidence: answer.confidence,
                    reasoning,
                    neighbours: None,
                    model: Some(answer.model.clone()),
                });
            }
        }
        Ok((calls, fresh))
    }
}

/// What every transaction of a run is decided with.
struct Step<'a> {
    tenant: TenantId,
    rules: &'a [CompiledRule],
    history: &'a History,
    names: &'a Names,
    threshold: f64,
    llm: bool,
    rule_only: bool,
}

impl Step<'_> {
    /// The rules, then the history, for one transaction (the LLM comes after, batched).
    fn decide(&self, c: ledger::Candidate, waiting: &HashSet<Uuid>) -> Pending {
        let mut change = AutoChange {
            transaction_id: c.id,
            category_id: None,
            splits: Vec::new(),
            categorization: None,
            add_tags: Vec::new(),
            merchant: None,
        };
        let mut decided = None;
        let mut matched = Vec::new();
        let seen = candidate(&c);
        let mut folded = rules::Folded::new(&seen);
        for rule in self.rules {
            let Some(reasoning) = rule.matches_with(&seen, &mut folded) else {
                continue;
            };
            matched.push(rule.id);
            let made = rule_change(rule, &c, reasoning, self.names);
            change.add_tags.extend(made.add_tags);
            if made.merchant.is_some() {
                change.merchant = made.merchant;
            }
            if made.categorization.is_some() {
                change.category_id = made.category_id;
                change.splits = made.splits;
                change.categorization = made.categorization;
                decided = Some("rule");
                break;
            }
        }
        let waiting = waiting.contains(&c.id);
        let mut doubt = None;
        if decided.is_none() && !self.rule_only && !waiting {
            let merchant = change.merchant.as_deref().or(c.merchant.as_deref());
            if let Some(s) = self.history.suggest(merchant, &c.description, Some(c.id)) {
                let reasoning = similarity_reasoning(&s, merchant, self.names);
                let neighbours: Vec<ledger::Neighbour> = s
                    .neighbours
                    .iter()
                    .map(|n| ledger::Neighbour {
                        transaction_id: n.transaction_id,
                        category_id: n.category_id,
                        similarity: n.similarity,
                    })
                    .collect();
                if s.confidence >= self.threshold {
                    change.category_id = Some(s.category_id);
                    change.categorization = Some(Categorization {
                        category_id: Some(s.category_id),
                        source: "similarity".into(),
                        confidence: s.confidence,
                        reasoning,
                        rule_id: None,
                        neighbours: Some(neighbours),
                        model: None,
                        decided_at: Utc::now(),
                    });
                    decided = Some("similarity");
                } else {
                    doubt = Some(Doubt {
                        category_id: s.category_id,
                        source: "similarity",
                        confidence: s.confidence,
                        reasoning,
                        neighbours: Some(neighbours),
                        model: None,
                    });
                }
            }
        }
        Pending {
            candidate: c,
            change,
            decided,
            doubt,
            waiting,
            matched,
        }
    }
}
