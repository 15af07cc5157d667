//! The categorization routes. Thin: authorize, parse, call the service, map.

use std::sync::Arc;

use kernel::{
    ApiResult, Keyset, LazyJson, TenantId, Validate,
    auth::{Authorize, BearerAuth},
    concurrency,
    idempotency::{self, Fingerprint, IdempotencyKey},
};
use poem::http::StatusCode;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    Categorizer,
    domain::{
        Approval, ApprovalStatus, Decided, Decision, DecisionAction, NewRule, Rule, RuleChanges,
        RuleTest, RunFilter, Settings,
    },
    rules::{Actions, Conditions},
    service::Explanation,
};

/// The permission of each operation, declared beside the routes (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("list_rules", RULES_READ),
    ("create_rule", RULES_WRITE),
    ("get_rule", RULES_READ),
    ("update_rule", RULES_WRITE),
    ("delete_rule", RULES_WRITE),
    ("test_rule", RULES_READ),
    ("apply_rule", RULES_WRITE),
    ("list_approvals", APPROVALS_READ),
    ("decide_approval", APPROVALS_WRITE),
    ("decide_approvals", APPROVALS_WRITE),
    ("categorize_transactions", TRANSACTIONS_WRITE),
    ("get_transaction_categorization", TRANSACTIONS_READ),
    ("get_categorization_settings", RULES_READ),
    ("put_categorization_settings", RULES_WRITE),
];
const RULES_READ: &str = "rules:read";
const RULES_WRITE: &str = "rules:write";
const APPROVALS_READ: &str = "approvals:read";
const APPROVALS_WRITE: &str = "approvals:write";
const TRANSACTIONS_READ: &str = "transactions:read";
const TRANSACTIONS_WRITE: &str = "transactions:write";

/// The most approvals one bulk decision takes.
const MAX_BULK: usize = 500;

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Categorization: rules, approvals of doubtful suggestions, and why each transaction
    /// has its category.
    Categorization,
}

/// The tenant's rules in the order they run.
#[derive(Debug, Object)]
pub struct RuleList {
    pub data: Vec<Rule>,
}

kernel::page_object!(
    /// Approvals, newest first.
    ApprovalList,
    Approval
);

/// A new rule.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRuleBody {
    /// 1–200 characters, unique in the tenant (case-insensitive).
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// Where it runs among the rules (ascending); after the last one when absent.
    pub position: Option<i32>,
    /// Default true.
    pub enabled: Option<bool>,
    pub conditions: Conditions,
    pub actions: Actions,
}

impl Validate for NewRuleBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if let Err(e) = kernel::DisplayName::parse("name", &self.name) {
            errors.push(e);
        }
        if let Err(e) = crate::rules::validate(&self.conditions, &self.actions) {
            errors.add(e.field, e.reason);
        }
    }
}

/// Changes to a rule.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    pub position: Option<i32>,
    pub enabled: Option<bool>,
    pub conditions: Option<Conditions>,
    pub actions: Option<Actions>,
}

impl Validate for RulePatch {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if let Some(Err(e)) = self
            .name
            .as_deref()
            .map(|n| kernel::DisplayName::parse("name", n))
        {
            errors.push(e);
        }
    }
}

/// A rule to preview.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDraft {
    pub conditions: Conditions,
    pub actions: Actions,
}

/// Preview a rule against the tenant's transactions.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestBody {
    pub rule: RuleDraft,
    /// How many of the newest matches to show: 1–100, default 20.
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    pub limit: Option<i64>,
}

impl Validate for TestBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if let Err(e) = crate::rules::validate(&self.rule.conditions, &self.rule.actions) {
            errors.add(format!("rule.{}", e.field), e.reason);
        }
        if self.limit.is_some_and(|l| !(1..=100).contains(&l)) {
            errors.add("limit", "must be between 1 and 100");
        }
    }
}

/// A person's decision on an approval.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub action: DecisionAction,
    /// Required to override; with approve, only the suggested category.
    pub category_id: Option<Uuid>,
    /// Also write the rule that would have decided it; it resolves the other waiting
    /// approvals it matches (their number is in `resolved`).
    pub create_rule: Option<bool>,
}

impl Validate for DecisionBody {}

/// One decision for many approvals.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkDecisionBody {
    /// 1–500 approvals, each once.
    #[oai(validator(min_items = 1, max_items = 500, unique_items = true))]
    pub approval_ids: Vec<Uuid>,
    pub action: DecisionAction,
    /// Required to override.
    pub category_id: Option<Uuid>,
}

impl Validate for BulkDecisionBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if self.approval_ids.is_empty() || self.approval_ids.len() > MAX_BULK {
            errors.add("approval_ids", "must list 1 to 500 approvals");
        }
        let mut seen = std::collections::HashSet::new();
        if !self.approval_ids.iter().all(|id| seen.insert(id)) {
            errors.add("approval_ids", "must list each approval once");
        }
    }
}

/// The decisions of a bulk request, in its order.
#[derive(Debug, Object)]
pub struct DecidedList {
    pub data: Vec<Decided>,
}

/// Which transactions to run the pipeline over.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategorizeFilter {
    /// Booked on or after.
    pub from: Option<chrono::NaiveDate>,
    /// Booked on or before.
    pub to: Option<chrono::NaiveDate>,
    pub account_id: Option<Uuid>,
    /// Also those an automation categorised before (default false: only uncategorised
    /// ones). A person's choice is never redone.
    pub include_categorized: Option<bool>,
}

/// Run the pipeline over existing transactions.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategorizeBody {
    pub filter: CategorizeFilter,
}

impl Validate for CategorizeBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if let (Some(from), Some(to)) = (self.filter.from, self.filter.to)
            && from > to
        {
            errors.add("filter.to", "is before `from`");
        }
    }
}

/// The tenant's categorization settings.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// 0–1: suggestions below it wait for a person.
    #[oai(validator(minimum(value = "0"), maximum(value = "1")))]
    pub approval_threshold: f64,
    pub llm_enabled: bool,
}

impl Validate for SettingsBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if !(0.0..=1.0).contains(&self.approval_threshold) {
            errors.add("approval_threshold", "must be between 0 and 1");
        }
    }
}

/// A job queued.
#[derive(Debug, Object)]
pub struct JobQueued {
    /// Follow it at `GET …/jobs/{job_id}`.
    pub job_id: Uuid,
}

#[derive(ApiResponse)]
pub enum Queued {
    /// Queued.
    #[oai(status = 202)]
    Queued(Json<JobQueued>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum RuleCreated {
    #[oai(status = 201)]
    Created(Json<Rule>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

/// The routes of categorization.
pub struct CategorizeApi {
    authz: Arc<dyn Authorize>,
    categorizer: Categorizer,
    cursors: kernel::CursorSigner,
}

impl CategorizeApi {
    pub fn new(
        authz: Arc<dyn Authorize>,
        categorizer: Categorizer,
        cursors: kernel::CursorSigner,
    ) -> Self {
        CategorizeApi {
            authz,
            categorizer,
            cursors,
        }
    }
}

fn queued(tenant: TenantId, job: Uuid) -> Queued {
    Queued::Queued(
        Json(JobQueued { job_id: job }),
        format!("/api/v1/tenants/{tenant}/jobs/{job}"),
    )
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Categorization")]
impl CategorizeApi {
    /// The tenant's rules, in the order they run: the first whose conditions hold and that
    /// sets a category decides; tags and merchant renames of rules before it apply too.
    #[oai(
        path = "/tenants/:tenant_id/rules",
        method = "get",
        operation_id = "list_rules"
    )]
    async fn list_rules(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
    ) -> ApiResult<Json<RuleList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_READ)
            .await?;
        let data = self.categorizer.rules(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(RuleList { data }))
    }

    /// Writes a rule. It decides transactions as they arrive from now on;
    /// `POST …/rules/{id}/apply` runs it over existing ones.
    #[oai(
        path = "/tenants/:tenant_id/rules",
        method = "post",
        operation_id = "create_rule"
    )]
    async fn create_rule(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewRuleBody>,
    ) -> ApiResult<RuleCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_rule", body.digest());
        let location = |r: &Rule| format!("/api/v1/tenants/{}/rules/{}", tenant_id.0, r.id);
        if let Some(rule) =
            idempotency::claim::<_, Rule>(&mut tx, key.as_ref(), fingerprint, StatusCode::CREATED)
                .await?
        {
            let at = location(&rule);
            return Ok(RuleCreated::Created(Json(rule), at));
        }
        let body = body.into_inner();
        let rule = self
            .categorizer
            .create_rule(
                &mut tx,
                NewRule {
                    name: body.name,
                    position: body.position,
                    enabled: body.enabled.unwrap_or(true),
                    conditions: body.conditions,
                    actions: body.actions,
                },
            )
            .await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &rule).await?;
        let at = location(&rule);
        Ok(RuleCreated::Created(Json(rule), at))
    }

    #[oai(
        path = "/tenants/:tenant_id/rules/:id",
        method = "get",
        operation_id = "get_rule"
    )]
    async fn get_rule(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Rule>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_READ)
            .await?;
        let rule = self.categorizer.rule(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(rule))
    }

    /// Changes a rule (`If-Match`: its version).
    #[oai(
        path = "/tenants/:tenant_id/rules/:id",
        method = "patch",
        operation_id = "update_rule"
    )]
    async fn update_rule(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<RulePatch>,
    ) -> ApiResult<Json<Rule>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let rule = self
            .categorizer
            .update_rule(
                &mut tx,
                id.0,
                expected,
                RuleChanges {
                    name: body.name,
                    position: body.position,
                    enabled: body.enabled,
                    conditions: body.conditions,
                    actions: body.actions,
                },
            )
            .await?;
        tx.commit().await?;
        Ok(Json(rule))
    }

    /// Deletes a rule; what it decided stays decided.
    #[oai(
        path = "/tenants/:tenant_id/rules/:id",
        method = "delete",
        operation_id = "delete_rule"
    )]
    async fn delete_rule(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_WRITE)
            .await?;
        self.categorizer.delete_rule(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Deleted::Deleted)
    }

    /// Previews a rule without writing anything: how many existing transactions it
    /// matches, how many of those a person categorised (applying leaves them), and the
    /// newest matches.
    #[oai(
        path = "/tenants/:tenant_id/rules/test",
        method = "post",
        operation_id = "test_rule"
    )]
    async fn test_rule(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        body: LazyJson<TestBody>,
    ) -> ApiResult<Json<RuleTest>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_READ)
            .await?;
        let body = body.parse()?.into_inner();
        let test = self
            .categorizer
            .test_rule(
                &mut tx,
                &body.rule.conditions,
                &body.rule.actions,
                body.limit.unwrap_or(20) as usize,
            )
            .await?;
        tx.commit().await?;
        Ok(Json(test))
    }

    /// Applies a rule to existing transactions as a job (`202`); a person's choices stay.
    #[oai(
        path = "/tenants/:tenant_id/rules/:id/apply",
        method = "post",
        operation_id = "apply_rule"
    )]
    async fn apply_rule(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Queued> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_WRITE)
            .await?;
        let job = self.categorizer.apply_rule(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(queued(tenant_id.0, job))
    }

    /// Suggestions below the tenant's confidence threshold (by default those waiting for
    /// a person), newest first, each with its transaction.
    #[oai(
        path = "/tenants/:tenant_id/approvals",
        method = "get",
        operation_id = "list_approvals"
    )]
    async fn list_approvals(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        /// Default `pending`.
        status: Query<Option<ApprovalStatus>>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ApprovalList>> {
        let status = status.0.unwrap_or(ApprovalStatus::Pending);
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, APPROVALS_READ)
            .await?;
        let page = Keyset::parse(
            &self.cursors,
            &format!("list_approvals:{}", status.as_str()),
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let list = self.categorizer.approvals(&mut tx, status, &page).await?;
        tx.commit().await?;
        Ok(Json(list.into()))
    }

    /// Decides an approval: `approve` takes the suggestion, `override` takes
    /// `category_id`. Either is the person's choice (locked; the history learns it). With
    /// `create_rule`, the rule that would have decided it is written, and `resolved` says
    /// how many other waiting approvals it decided.
    #[oai(
        path = "/tenants/:tenant_id/approvals/:id/decision",
        method = "post",
        operation_id = "decide_approval"
    )]
    async fn decide_approval(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
        body: LazyJson<DecisionBody>,
    ) -> ApiResult<Json<Decided>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, APPROVALS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let decided = self
            .categorizer
            .decide(
                &mut tx,
                id.0,
                Decision {
                    action: body.action,
                    category_id: body.category_id,
                    create_rule: body.create_rule.unwrap_or(false),
                },
            )
            .await?;
        tx.commit().await?;
        Ok(Json(decided))
    }

    /// One decision for many approvals at once, all or nothing: one that is decided
    /// already (or not found) fails the request and decides none.
    #[oai(
        path = "/tenants/:tenant_id/approvals/decisions",
        method = "post",
        operation_id = "decide_approvals"
    )]
    async fn decide_approvals(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        body: LazyJson<BulkDecisionBody>,
    ) -> ApiResult<Json<DecidedList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, APPROVALS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let data = self
            .categorizer
            .decide_all(&mut tx, &body.approval_ids, body.action, body.category_id)
            .await?;
        tx.commit().await?;
        Ok(Json(DecidedList { data }))
    }

    /// Runs the pipeline over existing transactions as a job (`202`), e.g. every
    /// uncategorised one since June.
    #[oai(
        path = "/tenants/:tenant_id/transactions/categorize",
        method = "post",
        operation_id = "categorize_transactions"
    )]
    async fn categorize_transactions(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        body: LazyJson<CategorizeBody>,
    ) -> ApiResult<Queued> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let job = self
            .categorizer
            .categorize(
                &mut tx,
                RunFilter {
                    from: body.filter.from,
                    to: body.filter.to,
                    account_id: body.filter.account_id,
                    include_categorized: body.filter.include_categorized.unwrap_or(false),
                },
            )
            .await?;
        tx.commit().await?;
        Ok(queued(tenant_id.0, job))
    }

    /// Why a transaction has its category (or has none yet), in words, with the decision
    /// as stored and the suggestion waiting for a person, if any.
    #[oai(
        path = "/tenants/:tenant_id/transactions/:id/categorization",
        method = "get",
        operation_id = "get_transaction_categorization"
    )]
    async fn get_transaction_categorization(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Explanation>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, TRANSACTIONS_READ)
            .await?;
        let explanation = self.categorizer.explain(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(explanation))
    }

    /// The tenant's categorization settings: the approval threshold and the LLM step.
    #[oai(
        path = "/tenants/:tenant_id/categorization/settings",
        method = "get",
        operation_id = "get_categorization_settings"
    )]
    async fn get_categorization_settings(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
    ) -> ApiResult<Json<Settings>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_READ)
            .await?;
        let settings = self.categorizer.settings(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(settings))
    }

    /// Sets the approval threshold and whether the LLM step runs (`If-Match`: the
    /// settings' version).
    #[oai(
        path = "/tenants/:tenant_id/categorization/settings",
        method = "put",
        operation_id = "put_categorization_settings"
    )]
    async fn put_categorization_settings(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<SettingsBody>,
    ) -> ApiResult<Json<Settings>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, RULES_WRITE)
            .await?;
        let body = body.parse()?.into_inner();
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let settings = self
            .categorizer
            .put_settings(&mut tx, expected, body.approval_threshold, body.llm_enabled)
            .await?;
        tx.commit().await?;
        Ok(Json(settings))
    }
}
