//! Billing (issue 24; API.md "Billing"; INTEGRATIONS.md §3): the plan catalogue
//! ([`plans`]), each tenant's subscription state, Stripe-hosted Checkout and portal through
//! async-stripe, and Stripe's webhook: verified on the raw body, stored once per event id
//! in a global inbox, applied by a job that fetches the subscription again so the newest
//! state wins whatever the arrival order. Plan limits ([`PlanLimits`]) are checked by the
//! creating modules in their own transactions through `kernel::limits`; a payment overdue
//! past the grace makes the tenant read-only (the access decision answers `402`).

mod domain;
mod error;
mod http;
mod jobs;
mod limits;
pub mod plans;
mod service;
mod signature;
mod store;
mod stripe;

pub use domain::{
    Entitlement, Entitlements, HostedSession, PlanCatalogue, PlanLimits as PlanLimitsView,
    PlanView, Subscription,
};
pub use error::BillingError;
pub use http::{BillingApi, PERMISSIONS};
pub use jobs::{cron, register};
pub use limits::{PlanLimits, this_month};
pub use plans::{Catalogue, Plan};
pub use service::{Applied, Billing, BillingConfig, EVENT_JOB, GRACE_JOB, Received, SWEEP_JOB};
pub use signature::TOLERANCE_SECS;
pub use stripe::{StripeConfig, SubscriptionState};
