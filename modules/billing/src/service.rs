//! The billing service: the catalogue, a tenant's subscription and entitlements, Checkout
//! and the portal, the webhook inbox and the job that applies its events, and the grace
//! that turns an overdue tenant read-only.

use std::{sync::Arc, time::Duration};

use audit::{NewEvent, Record};
use chrono::{DateTime, Utc};
use jobs::{Enqueue, NewJob};
use kernel::{Actor, Db, SystemTx, TenantId, TenantTx, limits::Limit};
use serde_json::{Value, json};
use sha2::Digest;

use crate::{
    BillingError,
    domain::{
        Entitlement, Entitlements, HostedSession, PlanCatalogue, PlanLimits as LimitsView,
        PlanView, Subscription,
    },
    limits::{PlanLimits, this_month},
    plans::{Catalogue, FREE},
    signature,
    store::{self, AccountRow},
    stripe::{Stripe, StripeConfig, SubscriptionState},
};

/// The job that applies one stored Stripe event.
pub const EVENT_JOB: &str = "billing.stripe_event";
/// The job that checks, when a tenant's grace should have run out, whether it has.
pub const GRACE_JOB: &str = "billing.grace_check";
/// The hourly sweep that catches any grace check that did not run.
pub const SWEEP_JOB: &str = "billing.grace_sweep";

/// The event types that can change a subscription; every other type is stored and ignored.
const HANDLED: &[&str] = &[
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
];

/// Statuses under which the subscription's plan applies.
const LIVE: &[&str] = &["trialing", "active", "past_due", "unpaid"];
/// Statuses of an overdue payment: the grace runs.
const OVERDUE: &[&str] = &["past_due", "unpaid"];

/// Stripe's statuses in the order a subscription lives through them: when two states are
/// stamped with the same second, the later in this order wins (a tie never goes back).
fn status_rank(status: Option<&str>) -> usize {
    const ORDER: &[&str] = &[
        "incomplete",
        "incomplete_expired",
        "trialing",
        "active",
        "past_due",
        "unpaid",
        "paused",
        "canceled",
    ];
    status
        .and_then(|s| ORDER.iter().position(|o| *o == s))
        .map_or(0, |p| p + 1)
}

/// How billing is set up.
#[derive(Debug, Clone)]
pub struct BillingConfig {
    pub catalogue: Arc<Catalogue>,
    /// How long a payment may stay overdue before the tenant is read-only.
    pub grace: Duration,
    /// Origins (`https://app.example.com`) that Checkout and the portal may send people
    /// back to.
    pub allowed_origins: Vec<String>,
    /// `None`: billing is off (no Stripe keys).
    pub stripe: Option<StripeConfig>,
}

impl Default for BillingConfig {
    fn default() -> BillingConfig {
        BillingConfig {
            catalogue: Arc::new(Catalogue::default()),
            grace: Duration::from_secs(14 * 86_400),
            allowed_origins: Vec::new(),
            stripe: None,
        }
    }
}

/// The billing service.
#[derive(Clone)]
pub struct Billing(Arc<Inner>);

struct Inner {
    db: Db,
    config: BillingConfig,
    stripe: Option<Stripe>,
    tenancy: tenancy::Tenancy,
}

/// What the webhook did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub event_id: String,
    /// Stored before: a replay, which changes nothing.
    pub duplicate: bool,
    /// `pending` (a job applies it), `ignored` (a type that changes no subscription) or
    /// `failed` (not an event at all).
    pub status: &'static str,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The tenant's state is now the subscription's (or already was).
    Applied { tenant: TenantId, changed: bool },
    /// An older state than the one kept: nothing changed.
    Stale,
    /// Nothing to do (applied before, a type we ignore, no subscription in it).
    Skipped(String),
    /// Cannot be applied, ever (kept with its reason).
    Failed(String),
}

fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

impl Billing {
    pub fn new(
        db: Db,
        config: BillingConfig,
        tenancy: tenancy::Tenancy,
    ) -> Result<Billing, BillingError> {
        let stripe = config.stripe.as_ref().map(Stripe::new).transpose()?;
        Ok(Billing(Arc::new(Inner {
            db,
            config,
            stripe,
            tenancy,
        })))
    }

    /// The plan limits, for the modules that create limited things.
    pub fn limits(&self) -> PlanLimits {
        PlanLimits::new(self.0.config.catalogue.clone())
    }

    pub fn enabled(&self) -> bool {
        self.0.stripe.is_some()
    }

    fn stripe(&self) -> Result<&Stripe, BillingError> {
        self.0.stripe.as_ref().ok_or(BillingError::Disabled)
    }

    fn catalogue(&self) -> &Catalogue {
        &self.0.config.catalogue
    }

    /// The public catalogue.
    pub fn plans(&self) -> PlanCatalogue {
        let enabled = self.enabled();
        PlanCatalogue {
            billing_enabled: enabled,
            plans: self
                .catalogue()
                .plans()
                .iter()
                .map(|p| PlanView {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    monthly_price: p.monthly_price,
                    currency: p.currency.clone(),
                    purchasable: enabled && p.stripe_price_id.is_some(),
                    limits: LimitsView {
                        members: p.limit(Limit::Members),
                        bank_connections: p.limit(Limit::BankConnections),
                        transactions_per_month: p.limit(Limit::TransactionsPerMonth),
                        telegram_recipients: p.limit(Limit::TelegramRecipients),
                    },
                })
                .collect(),
        }
    }

    fn view(&self, row: &AccountRow) -> Subscription {
        let grace = chrono::Duration::from_std(self.0.config.grace).unwrap_or_default();
        Subscription {
            plan: self.catalogue().effective(&row.plan).id.clone(),
            status: row.status.clone(),
            current_period_end: row.current_period_end,
            cancel_at_period_end: row.cancel_at_period_end,
            past_due_since: row.past_due_since,
            grace_ends_at: row.past_due_since.map(|since| since + grace),
            read_only: row.read_only_since.is_some(),
        }
    }

    /// The tenant's plan and subscription.
    pub async fn subscription(&self, tx: &mut TenantTx) -> Result<Subscription, BillingError> {
        let tenant = tx.tenant_id();
        let row = store::account(tx.conn(), tenant).await?;
        Ok(self.view(&row))
    }

    /// Each limit of the tenant's plan with its usage now.
    pub async fn entitlements(&self, tx: &mut TenantTx) -> Result<Entitlements, BillingError> {
        let tenant = tx.tenant_id();
        let row = store::account(tx.conn(), tenant).await?;
        let plan = self.catalogue().effective(&row.plan).clone();
        let mut limits = Vec::with_capacity(Limit::ALL.len());
        for limit in Limit::ALL {
            let used = PlanLimits::used(tx, limit).await?;
            let allowed = plan.limit(limit);
            limits.push(Entitlement {
                limit: limit.as_str().into(),
                allowed,
                used,
                over: allowed.is_some_and(|a| used > a),
            });
        }
        Ok(Entitlements {
            plan: plan.id,
            period_start: this_month(),
            limits,
        })
    }

    /// A URL people may be sent back to: absolute http(s) on an allowed origin.
    fn check_return_url(&self, field: &str, raw: &str) -> Result<String, BillingError> {
        let url = url::Url::parse(raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .ok_or_else(|| BillingError::invalid(field, "must be an absolute http(s) URL"))?;
        let allowed = &self.0.config.allowed_origins;
        if !allowed.iter().any(|o| *o == origin(&url)) {
            return Err(BillingError::invalid(
                field,
                format!(
                    "must be on an allowed origin ({})",
                    if allowed.is_empty() {
                        "none is configured".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
        Ok(url.to_string())
    }

    /// A Stripe-hosted Checkout for `plan` (subscription mode). The tenant's Stripe customer
    /// is made the first time, under an idempotency key, and stored in the transaction that
    /// holds the tenant's billing row, so concurrent checkouts make one customer.
    pub async fn checkout(
        &self,
        mut tx: TenantTx,
        plan: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<HostedSession, BillingError> {
        let stripe = self.stripe()?;
        let chosen = self.catalogue().get(plan).ok_or_else(|| {
            BillingError::invalid("plan", "is not a plan (see GET /api/v1/plans)")
        })?;
        let Some(price) = chosen.stripe_price_id.clone() else {
            return Err(BillingError::invalid(
                "plan",
                if chosen.id == FREE {
                    "is free: nothing to pay for".to_string()
                } else {
                    format!("`{}` cannot be bought here", chosen.id)
                },
            ));
        };
        let success = self.check_return_url("success_url", success_url)?;
        let cancel = self.check_return_url("cancel_url", cancel_url)?;
        let tenant = tx.tenant_id();
        let account = store::lock_account(tx.conn(), tenant).await?;
        if account.status.as_deref().is_some_and(|s| LIVE.contains(&s)) {
            return Err(BillingError::AlreadySubscribed);
        }
        let customer = match account.stripe_customer_id {
            Some(customer) => customer,
            None => {
                let name = self
                    .0
                    .tenancy
                    .get(&mut tx)
                    .await
                    .map_err(kernel::Problem::from)?
                    .name;
                let email = match tx.context().actor.user_id() {
                    Some(user) => Some(
                        self.0
                            .tenancy
                            .member(&mut tx, user)
                            .await
                            .map_err(kernel::Problem::from)?
                            .email,
                    ),
                    None => None,
                };
                let customer = stripe
                    .create_customer(tenant, &name, email.as_deref())
                    .await?;
                store::set_customer(tx.conn(), tenant, &customer).await?;
                customer
            }
        };
        let context = tx.context().clone();
        tx.commit().await?;
        // No transaction is held while Stripe makes the session.
        let url = stripe
            .checkout(tenant, &customer, &price, &success, &cancel)
            .await?;
        let mut tx = TenantTx::resume(&self.0.db, &context).await?;
        tx.record(
            NewEvent::new("billing.checkout_started")
                .resource("plan", &chosen.id)
                .payload(json!({ "plan": chosen.id })),
        );
        tx.commit().await?;
        Ok(HostedSession { url })
    }

    /// A Stripe billing portal session, where the tenant changes plan, card or cancels.
    pub async fn portal(
        &self,
        mut tx: TenantTx,
        return_url: &str,
    ) -> Result<HostedSession, BillingError> {
        let stripe = self.stripe()?;
        let back = self.check_return_url("return_url", return_url)?;
        let tenant = tx.tenant_id();
        let account = store::account(tx.conn(), tenant).await?;
        let customer = account.stripe_customer_id.ok_or(BillingError::NoCustomer)?;
        tx.commit().await?;
        let url = stripe.portal(&customer, &back).await?;
        Ok(HostedSession { url })
    }

    /// A delivery of Stripe's webhook: the signature is checked on the raw bytes against
    /// every configured secret; the event is stored once by id and a job applies it.
    /// Nothing is stored when the signature does not verify.
    pub async fn receive(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> Result<Received, BillingError> {
        let config = self
            .0
            .config
            .stripe
            .as_ref()
            .ok_or(BillingError::Disabled)?;
        let header = signature_header.ok_or(BillingError::BadSignature("no Stripe-Signature"))?;
        let secrets: Vec<String> = config
            .webhook_secrets
            .iter()
            .map(|s| s.expose().clone())
            .collect();
        signature::verify(header, body, &secrets, Utc::now().timestamp())
            .map_err(BillingError::BadSignature)?;
        // Signed by Stripe: kept whatever it holds. What is not an event is stored failed
        // under its digest, so a redelivery is a replay and nothing retries it.
        let parsed = std::str::from_utf8(body)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|v| {
                let id = v["id"]
                    .as_str()
                    .filter(|id| (1..=255).contains(&id.len()))?
                    .to_string();
                let kind = v["type"].as_str()?.to_string();
                Some((id, kind, v["created"].as_i64()))
            });
        let text = String::from_utf8_lossy(body);
        let (id, kind, created, status, detail) = match parsed {
            Some((id, kind, created)) => {
                let status = if HANDLED.contains(&kind.as_str()) {
                    "pending"
                } else {
                    "ignored"
                };
                let detail = (status == "ignored").then_some("an event type billing does not use");
                let created = created.and_then(|c| DateTime::from_timestamp(c, 0));
                (id, Some(kind), created, status, detail)
            }
            None => {
                let digest = kernel::hex::encode(&sha2::Sha256::digest(body));
                (
                    format!("unparsed:{digest}"),
                    None,
                    None,
                    "failed",
                    Some("not a JSON event"),
                )
            }
        };
        let mut tx = SystemTx::begin(&self.0.db, Actor::System).await?;
        let inserted = store::insert_event(
            tx.conn(),
            &id,
            kind.as_deref(),
            created,
            &text,
            status,
            detail,
        )
        .await?;
        if inserted && status == "pending" {
            tx.enqueue(
                NewJob::new("webhooks", EVENT_JOB, json!({ "event_id": id }))
                    .idempotency_key(format!("stripe-event:{id}")),
            );
        }
        tx.commit().await?;
        if status == "failed" && inserted {
            tracing::error!(event = %id, "a signed Stripe delivery is not an event; stored as failed");
        }
        Ok(Received {
            event_id: id,
            duplicate: !inserted,
            status,
        })
    }

    /// Applies a stored event: the subscription it names is fetched again from Stripe, so
    /// the state written is Stripe's newest whatever order the events came in; the fetch's
    /// time stamps it, and an older stamp never overwrites a newer one. Applied once: a
    /// second run of an applied event does nothing.
    pub async fn apply_event(&self, event_id: &str) -> Result<Applied, BillingError> {
        let stripe = self.stripe()?;
        let db = &self.0.db;
        let mut tx = SystemTx::begin(db, Actor::System).await?;
        let event = store::event(tx.conn(), event_id).await?;
        tx.rollback().await?;
        let Some(event) = event else {
            return Ok(Applied::Skipped("no such event".into()));
        };
        if event.status != "pending" {
            return Ok(Applied::Skipped(format!("already {}", event.status)));
        }
        let outcome = self.apply_body(stripe, &event).await;
        let (status, detail) = match &outcome {
            Ok(Applied::Applied { .. }) => ("applied", None),
            Ok(Applied::Stale) => ("applied", Some("older than the state kept".to_string())),
            Ok(Applied::Skipped(why)) => ("ignored", Some(why.clone())),
            Ok(Applied::Failed(why)) => ("failed", Some(why.clone())),
            // Stripe out of reach, the database: the job retries.
            Err(_) => return outcome,
        };
        let mut tx = SystemTx::begin(db, Actor::System).await?;
        store::finish_event(tx.conn(), event_id, status, detail.as_deref()).await?;
        tx.commit().await?;
        if status == "failed" {
            tracing::error!(event = %event_id, detail = ?detail, "a Stripe event cannot be applied");
        }
        outcome
    }

    async fn apply_body(
        &self,
        stripe: &Stripe,
        event: &store::EventRow,
    ) -> Result<Applied, BillingError> {
        let body: Value = match serde_json::from_str(&event.body) {
            Ok(v) => v,
            Err(_) => return Ok(Applied::Failed("not JSON".into())),
        };
        let kind = event.kind.as_deref().unwrap_or_default();
        let object = &body["data"]["object"];
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let tenant_of = |v: &Value| {
            text(v)
                .and_then(|s| s.parse().ok())
                .map(TenantId::from_uuid)
        };
        let (subscription, hint) = match kind {
            "checkout.session.completed" => {
                if object["mode"].as_str() != Some("subscription") {
                    return Ok(Applied::Skipped("not a subscription checkout".into()));
                }
                (
                    text(&object["subscription"]),
                    tenant_of(&object["client_reference_id"]),
                )
            }
            k if k.starts_with("customer.subscription.") => (
                text(&object["id"]),
                tenant_of(&object["metadata"]["tenant_id"]),
            ),
            k if k.starts_with("invoice.") => {
                let details = &object["parent"]["subscription_details"];
                (
                    text(&details["subscription"]).or_else(|| text(&object["subscription"])),
                    tenant_of(&details["metadata"]["tenant_id"]),
                )
            }
            _ => {
                return Ok(Applied::Skipped(
                    "an event type billing does not use".into(),
                ));
            }
        };
        let Some(subscription) = subscription else {
            return Ok(Applied::Skipped("names no subscription".into()));
        };
        // The fetch's time, on the database's clock, stamps the state it reads.
        let fetched_at = {
            let mut tx = SystemTx::begin(&self.0.db, Actor::System).await?;
            let now = store::clock(tx.conn()).await?;
            tx.rollback().await?;
            now
        };
        let (state, stamp) = match stripe.subscription(&subscription).await? {
            Some(state) => (state, fetched_at),
            // Gone at Stripe: the event's own object is the last word, stamped with the
            // event's time (ties never go back).
            None if kind.starts_with("customer.subscription.") => {
                match crate::stripe::state_from_json(object) {
                    Some(state) => (state, event.created.unwrap_or(fetched_at)),
                    None => return Ok(Applied::Failed("the subscription cannot be read".into())),
                }
            }
            None => return Ok(Applied::Skipped("the subscription no longer exists".into())),
        };
        let Some(tenant) = state.tenant.or(hint) else {
            return Ok(Applied::Failed(
                "names no tenant (no metadata.tenant_id)".into(),
            ));
        };
        let payment_failed = (kind == "invoice.payment_failed").then_some(event.id.as_str());
        self.write_state(tenant, &state, stamp, payment_failed)
            .await
    }

    async fn write_state(
        &self,
        tenant: TenantId,
        state: &SubscriptionState,
        stamp: DateTime<Utc>,
        payment_failed: Option<&str>,
    ) -> Result<Applied, BillingError> {
        let mut tx = TenantTx::begin(&self.0.db, tenant, Actor::System).await?;
        tx.act_for("billing");
        let before = match store::lock_account(tx.conn(), tenant).await {
            Ok(row) => row,
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Ok(Applied::Failed(format!("no tenant {tenant}")));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(mine) = &before.stripe_customer_id
            && *mine != state.customer
        {
            return Ok(Applied::Failed(format!(
                "the subscription's customer is not tenant {tenant}'s"
            )));
        }
        let catalogue = self.catalogue();
        let live = LIVE.contains(&state.status.as_str());
        let plan = match (
            live,
            state
                .price_id
                .as_deref()
                .and_then(|p| catalogue.by_price(p)),
        ) {
            (false, _) => FREE.to_string(),
            (true, Some(plan)) => plan.id.clone(),
            (true, None) => {
                tracing::warn!(%tenant, price = ?state.price_id, "a subscription on a price of no plan");
                return Ok(Applied::Failed(format!(
                    "price {:?} is no plan's (BALANCE_PLANS)",
                    state.price_id
                )));
            }
        };
        if let Some(kept) = before.state_at {
            let tie_goes_back = stamp == kept
                && (status_rank(Some(&state.status)) < status_rank(before.status.as_deref())
                    || catalogue.rank(&plan) < catalogue.rank(&before.plan));
            if stamp < kept || tie_goes_back {
                tx.rollback().await?;
                return Ok(Applied::Stale);
            }
        }
        let overdue = OVERDUE.contains(&state.status.as_str());
        let mut after = AccountRow {
            plan: plan.clone(),
            stripe_customer_id: Some(state.customer.clone()),
            stripe_subscription_id: Some(state.id.clone()),
            status: Some(state.status.clone()),
            price_id: state.price_id.clone(),
            current_period_end: state.current_period_end,
            cancel_at_period_end: state.cancel_at_period_end,
            state_at: Some(stamp),
            past_due_since: if overdue {
                before.past_due_since.or(Some(Utc::now()))
            } else {
                None
            },
            read_only_since: if overdue {
                before.read_only_since
            } else {
                None
            },
            payment_failed_event: before.payment_failed_event.clone(),
        };
        let changed = (
            &after.plan,
            &after.status,
            after.current_period_end,
            after.cancel_at_period_end,
        ) != (
            &before.plan,
            &before.status,
            before.current_period_end,
            before.cancel_at_period_end,
        );
        if changed {
            tx.record(
                NewEvent::new("billing.subscription_updated")
                    .resource("subscription", &state.id)
                    .payload(json!({
                        "from": { "status": before.status, "plan": before.plan },
                        "to": { "status": after.status, "plan": after.plan },
                        "cancel_at_period_end": after.cancel_at_period_end,
                    })),
            );
        }
        if after.plan != before.plan {
            self.0
                .tenancy
                .set_plan(&mut tx, &after.plan)
                .await
                .map_err(kernel::Problem::from)?;
        }
        if overdue && before.past_due_since.is_none() {
            // The grace check runs when the grace ends (the hourly sweep catches a miss).
            tx.enqueue(
                NewJob::new("system", GRACE_JOB, json!({}))
                    .idempotency_key(format!("billing-grace:{tenant}:{}", stamp.timestamp()))
                    .delay(self.0.config.grace),
            );
        }
        if before.read_only_since.is_some() && after.read_only_since.is_none() {
            tx.record(
                NewEvent::new("billing.read_only_left")
                    .resource("subscription", &state.id)
                    .payload(json!({ "status": after.status })),
            );
        }
        if let Some(event) = payment_failed
            && before.payment_failed_event.as_deref() != Some(event)
        {
            after.payment_failed_event = Some(event.to_string());
            self.payment_failed(&mut tx, &state.id).await?;
        }
        store::write_account(tx.conn(), tenant, &after).await?;
        tx.commit().await?;
        Ok(Applied::Applied { tenant, changed })
    }

    /// A failed payment: audited, and the members who handle billing are told by mail.
    async fn payment_failed(
        &self,
        tx: &mut TenantTx,
        subscription: &str,
    ) -> Result<(), BillingError> {
        let grace_days = (self.0.config.grace.as_secs() / 86_400) as i64;
        let tenancy = &self.0.tenancy;
        let name = tenancy.get(tx).await.map_err(kernel::Problem::from)?.name;
        let members = tenancy
            .members_with(tx, "billing:write")
            .await
            .map_err(kernel::Problem::from)?;
        for member in &members {
            let Ok(to) = kernel::Email::parse(&member.email) else {
                continue;
            };
            mail::queue(
                tx,
                &to,
                &mail::Template::PaymentFailed {
                    tenant: name.clone(),
                    grace_days,
                },
            )
            .await?;
        }
        tx.record(
            NewEvent::new("billing.payment_failed")
                .resource("subscription", subscription)
                .payload(json!({ "notified": members.len() as i64, "grace_days": grace_days })),
        );
        Ok(())
    }

    /// A tenant whose payment stayed overdue past the grace becomes read-only (audited
    /// once). Returns whether it did now.
    pub async fn check_grace(&self, tenant: TenantId) -> Result<bool, BillingError> {
        let mut tx = TenantTx::begin(&self.0.db, tenant, Actor::System).await?;
        tx.act_for("billing");
        let grace = self.0.config.grace.as_secs_f64();
        let Some(since) = store::enter_read_only(tx.conn(), tenant, grace).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        tx.record(
            NewEvent::new("billing.read_only_entered")
                .resource("tenant", tenant)
                .payload(json!({ "past_due_since": since.timestamp() })),
        );
        tx.commit().await?;
        tracing::warn!(%tenant, "tenant read-only: payment overdue past the grace");
        Ok(true)
    }

    /// Every tenant's grace check (hourly, behind the per-tenant job); returns how many
    /// became read-only.
    pub async fn sweep(&self) -> Result<u64, BillingError> {
        let mut tx = SystemTx::begin(&self.0.db, Actor::System).await?;
        let tenants = store::live_tenants(tx.conn()).await?;
        tx.rollback().await?;
        let mut entered = 0;
        for tenant in tenants {
            match self.check_grace(tenant).await {
                Ok(true) => entered += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(%tenant, error = ?e, "grace check failed"),
            }
        }
        Ok(entered)
    }
}
