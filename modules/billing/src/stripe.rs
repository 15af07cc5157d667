//! The Stripe calls billing makes, through async-stripe (INTEGRATIONS.md §3): a customer
//! made once per tenant under an idempotency key, a subscription-mode Checkout Session, a
//! billing portal session, and the re-fetch of a subscription that makes the newest state
//! win whatever order Stripe's events arrive in.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use kernel::TenantId;

use stripe::StripeRequest as _;
use stripe_billing::{
    billing_portal_session::CreateBillingPortalSession, subscription::RetrieveSubscription,
};
use stripe_checkout::{
    CheckoutSessionMode,
    checkout_session::{
        CreateCheckoutSession, CreateCheckoutSessionLineItems,
        CreateCheckoutSessionSubscriptionData,
    },
};
use stripe_core::customer::CreateCustomer;

use crate::BillingError;

/// Where and how to reach Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: kernel::Secret<String>,
    /// The API root (`https://api.stripe.com`; a stand-in's URL in tests).
    pub api_base: String,
    /// The endpoint secrets (`whsec_…`) the webhook is signed with; several while one rolls.
    pub webhook_secrets: Vec<kernel::Secret<String>>,
    pub timeout: Duration,
}

/// A subscription as Stripe has it now.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionState {
    pub id: String,
    pub customer: String,
    pub status: String,
    pub price_id: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    /// The tenant the checkout put in `subscription_data.metadata`.
    pub tenant: Option<TenantId>,
}

/// The client.
#[derive(Clone)]
pub struct Stripe {
    client: stripe::Client,
}

/// Throttling, Stripe's own failures, timeouts and the network are worth retrying; the
/// rest (a refused parameter, a bad key) is not.
fn failure(e: stripe::StripeError) -> BillingError {
    match &e {
        stripe::StripeError::Stripe(_, status) if *status == 429 || *status >= 500 => {
            BillingError::StripeUnavailable(e.to_string())
        }
        stripe::StripeError::Stripe(api, status) => {
            BillingError::Stripe(format!("{status} {:?} {:?}", api.type_, api.code))
        }
        stripe::StripeError::Timeout | stripe::StripeError::ClientError(_) => {
            BillingError::StripeUnavailable(e.to_string())
        }
        _ => BillingError::Stripe(e.to_string()),
    }
}

impl Stripe {
    pub fn new(config: &StripeConfig) -> Result<Stripe, BillingError> {
        let mut base = config.api_base.clone();
        if !base.ends_with('/') {
            base.push('/');
        }
        let client = stripe::ClientBuilder::new(config.secret_key.expose())
            .url(base)
            .request_strategy(stripe::RequestStrategy::Once)
            .timeout(config.timeout)
            .app_info("balance", Some(env!("CARGO_PKG_VERSION").into()), None)
            .build()
            .map_err(|e| BillingError::Stripe(e.to_string()))?;
        Ok(Stripe { client })
    }

    /// The tenant's customer: made once, whatever the number of attempts, under the
    /// idempotency key `tenant:<id>:customer`.
    pub async fn create_customer(
        &self,
        tenant: TenantId,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, BillingError> {
        let key = stripe::IdempotencyKey::new(format!("tenant:{tenant}:customer"))
            .map_err(|e| BillingError::Stripe(e.to_string()))?;
        let mut request = CreateCustomer::new().name(name).metadata(HashMap::from([(
            "tenant_id".to_string(),
            tenant.to_string(),
        )]));
        if let Some(email) = email {
            request = request.email(email);
        }
        let customer = request
            .customize()
            .request_strategy(stripe::RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(failure)?;
        Ok(customer.id.as_str().to_string())
    }

    /// A subscription-mode Checkout for one price; the tenant rides in
    /// `client_reference_id` and in the subscription's metadata (a session's own metadata
    /// is not copied to the subscription).
    pub async fn checkout(
        &self,
        tenant: TenantId,
        customer: &str,
        price: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<String, BillingError> {
        let metadata = HashMap::from([("tenant_id".to_string(), tenant.to_string())]);
        let separator = if success_url.contains('?') { '&' } else { '?' };
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Subscription)
            .customer(customer)
            .client_reference_id(tenant.to_string())
            .line_items(vec![CreateCheckoutSessionLineItems {
                price: Some(price.to_string()),
                quantity: Some(1),
                ..Default::default()
            }])
            .success_url(format!(
                "{success_url}{separator}session_id={{CHECKOUT_SESSION_ID}}"
            ))
            .cancel_url(cancel_url)
            .subscription_data(CreateCheckoutSessionSubscriptionData {
                metadata: Some(metadata),
                ..Default::default()
            })
            .send(&self.client)
            .await
            .map_err(failure)?;
        session
            .url
            .ok_or_else(|| BillingError::Stripe("the checkout session has no url".into()))
    }

    pub async fn portal(&self, customer: &str, return_url: &str) -> Result<String, BillingError> {
        let session = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url)
            .send(&self.client)
            .await
            .map_err(failure)?;
        Ok(session.url)
    }

    /// The subscription now; `None` when Stripe has no such subscription.
    pub async fn subscription(&self, id: &str) -> Result<Option<SubscriptionState>, BillingError> {
        match RetrieveSubscription::new(id).send(&self.client).await {
            Ok(sub) => Ok(Some(state_of(&sub))),
            Err(stripe::StripeError::Stripe(api, 404))
                if api.code == Some(stripe::ApiErrorsCode::ResourceMissing) =>
            {
                Ok(None)
            }
            Err(e) => Err(failure(e)),
        }
    }
}

fn state_of(sub: &stripe_shared::Subscription) -> SubscriptionState {
    let item = sub.items.data.first();
    SubscriptionState {
        id: sub.id.as_str().to_string(),
        customer: sub.customer.id().as_str().to_string(),
        status: sub.status.as_str().to_string(),
        price_id: item.map(|i| i.price.id.as_str().to_string()),
        // The billing period lives on the items in this API version.
        current_period_end: item.and_then(|i| DateTime::from_timestamp(i.current_period_end, 0)),
        cancel_at_period_end: sub.cancel_at_period_end,
        tenant: sub
            .metadata
            .get("tenant_id")
            .and_then(|t| t.parse().ok())
            .map(TenantId::from_uuid),
    }
}

/// A subscription object as JSON (an event's `data.object`): what the state needs of it.
pub(crate) fn state_from_json(object: &serde_json::Value) -> Option<SubscriptionState> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let item = &object["items"]["data"][0];
    let period_end = item["current_period_end"]
        .as_i64()
        .or_else(|| object["current_period_end"].as_i64())
        .and_then(|t| DateTime::from_timestamp(t, 0));
    Some(SubscriptionState {
        id: text(&object["id"])?,
        customer: text(&object["customer"]).or_else(|| text(&object["customer"]["id"]))?,
        status: text(&object["status"])?,
        price_id: text(&item["price"]["id"]),
        current_period_end: period_end,
        cancel_at_period_end: object["cancel_at_period_end"].as_bool().unwrap_or(false),
        tenant: object["metadata"]["tenant_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(TenantId::from_uuid),
    })
}
