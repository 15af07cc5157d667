//! The billing routes and Stripe's webhook. Thin: authorize, parse, call the service, map.

use std::sync::Arc;

use kernel::{
    ApiResult, LazyJson, TenantId, Validate,
    auth::{Authorize, BearerAuth},
};
use poem_openapi::{Object, OpenApi, param::Path, payload::Json};
use serde::Deserialize;

use crate::{
    Billing,
    domain::{Entitlements, HostedSession, PlanCatalogue, Subscription},
};

/// The permission of each operation, declared beside the routes (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("get_subscription", READ),
    ("get_entitlements", READ),
    ("create_checkout_session", WRITE),
    ("create_portal_session", WRITE),
];
const READ: &str = "billing:read";
const WRITE: &str = "billing:write";

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Plans, the tenant's subscription and limits, Stripe-hosted Checkout and portal.
    Billing,
    /// Calls from outside services, checked by their signatures.
    Webhooks,
}

/// The longest URL accepted for a return page.
const MAX_URL: usize = 2048;

fn url_length(field: &str, url: &str, errors: &mut kernel::FieldErrors) {
    if !(1..=MAX_URL).contains(&url.len()) {
        errors.add(field, format!("must be 1 to {MAX_URL} characters"));
    }
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// `team` or `business` (see `GET /api/v1/plans`).
    #[oai(validator(min_length = 1, max_length = 40))]
    pub plan: String,
    /// Where Stripe sends the person after paying; `{CHECKOUT_SESSION_ID}` is appended as
    /// `session_id`. Must be on an allowed origin.
    #[oai(validator(min_length = 1, max_length = 2048))]
    pub success_url: String,
    /// Where Stripe sends the person who gives up. Must be on an allowed origin.
    #[oai(validator(min_length = 1, max_length = 2048))]
    pub cancel_url: String,
}

impl Validate for CheckoutBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        if !(1..=40).contains(&self.plan.chars().count()) {
            errors.add("plan", "must be 1 to 40 characters");
        }
        url_length("success_url", &self.success_url, errors);
        url_length("cancel_url", &self.cancel_url, errors);
    }
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalBody {
    /// Where the portal's back link goes. Must be on an allowed origin.
    #[oai(validator(min_length = 1, max_length = 2048))]
    pub return_url: String,
}

impl Validate for PortalBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        url_length("return_url", &self.return_url, errors);
    }
}

/// A Stripe event (`{id, type, data: {object}, …}`). Its exact bytes are checked against
/// the `Stripe-Signature` header; every other field is allowed.
#[derive(Debug, Object, Deserialize)]
pub struct StripeEvent {
    pub id: Option<String>,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl Validate for StripeEvent {}

#[derive(Debug, Object)]
pub struct StripeEventReceived {
    pub received: bool,
    /// Received before: a replay, which changed nothing.
    pub duplicate: bool,
    /// `pending` (applied shortly by a job), `ignored` (a type billing does not use) or
    /// `failed` (signed, but not an event).
    pub status: String,
}

/// The billing routes.
pub struct BillingApi {
    authz: Arc<dyn Authorize>,
    billing: Billing,
}

impl BillingApi {
    pub fn new(authz: Arc<dyn Authorize>, billing: Billing) -> Self {
        BillingApi { authz, billing }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Billing")]
impl BillingApi {
    /// The plans with their prices and limits (public). `billing_enabled: false` means the
    /// platform runs without Stripe: every tenant is on `free`.
    #[oai(path = "/plans", method = "get", operation_id = "list_plans")]
    async fn list_plans(&self) -> ApiResult<Json<PlanCatalogue>> {
        Ok(Json(self.billing.plans()))
    }

    /// The tenant's plan, Stripe status, period end, and whether it is read-only.
    #[oai(
        path = "/tenants/:tenant_id/subscription",
        method = "get",
        operation_id = "get_subscription"
    )]
    async fn get_subscription(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
    ) -> ApiResult<Json<Subscription>> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, READ).await?;
        let subscription = self.billing.subscription(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(subscription))
    }

    /// Each limit of the tenant's plan with its usage now.
    #[oai(
        path = "/tenants/:tenant_id/entitlements",
        method = "get",
        operation_id = "get_entitlements"
    )]
    async fn get_entitlements(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
    ) -> ApiResult<Json<Entitlements>> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, READ).await?;
        let entitlements = self.billing.entitlements(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(entitlements))
    }

    /// A Stripe-hosted Checkout that subscribes the tenant to `plan`; send the person to
    /// `url`. The plan changes when Stripe's webhook confirms the payment.
    #[oai(
        path = "/tenants/:tenant_id/billing/checkout-session",
        method = "post",
        operation_id = "create_checkout_session"
    )]
    async fn create_checkout_session(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        body: LazyJson<CheckoutBody>,
    ) -> ApiResult<Json<HostedSession>> {
        let tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        let body = body.parse()?.into_inner();
        let session = self
            .billing
            .checkout(tx, &body.plan, &body.success_url, &body.cancel_url)
            .await?;
        Ok(Json(session))
    }

    /// A Stripe billing portal session (change plan or card, cancel, invoices).
    #[oai(
        path = "/tenants/:tenant_id/billing/portal-session",
        method = "post",
        operation_id = "create_portal_session"
    )]
    async fn create_portal_session(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        body: LazyJson<PortalBody>,
    ) -> ApiResult<Json<HostedSession>> {
        let tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        let body = body.parse()?.into_inner();
        Ok(Json(self.billing.portal(tx, &body.return_url).await?))
    }

    /// Stripe's webhook (public: the signature is the credential). Verified on the raw
    /// body against every configured secret, stored once by event id, answered at once;
    /// a job applies it. A replay is a `200` that changes nothing.
    #[oai(
        path = "/webhooks/stripe",
        method = "post",
        operation_id = "stripe_webhook",
        tag = "Tag::Webhooks"
    )]
    async fn stripe_webhook(
        &self,
        request: &poem::Request,
        body: LazyJson<StripeEvent>,
    ) -> ApiResult<Json<StripeEventReceived>> {
        let signature = request
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok());
        let received = self.billing.receive(signature, body.bytes()).await?;
        Ok(Json(StripeEventReceived {
            received: true,
            duplicate: received.duplicate,
            status: received.status.to_string(),
        }))
    }
}
