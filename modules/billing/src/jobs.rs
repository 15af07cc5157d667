//! Billing's jobs: applying a stored Stripe event, the grace check of one tenant, and the
//! hourly sweep behind it.

use jobs::{CronJob, JobError, NewJob, Registry};
use kernel::Problem;

use crate::{
    Billing, BillingError,
    service::{Applied, EVENT_JOB, GRACE_JOB, SWEEP_JOB},
};

fn job_error(e: BillingError) -> JobError {
    match e {
        BillingError::StripeUnavailable(_) | BillingError::Database(_) => JobError::caused_by(&e),
        other => JobError::from(Problem::from(other)),
    }
}

/// Registers billing's handlers.
pub fn register(registry: Registry, billing: Billing) -> Registry {
    let applying = billing.clone();
    let checking = billing.clone();
    registry
        .handle(EVENT_JOB, move |job| {
            let billing = applying.clone();
            async move {
                let id = job.payload["event_id"]
                    .as_str()
                    .ok_or_else(|| JobError::fatal("no event_id"))?
                    .to_string();
                match billing.apply_event(&id).await.map_err(job_error)? {
                    Applied::Applied { tenant, changed } => {
                        tracing::info!(event = %id, %tenant, changed, "stripe event applied")
                    }
                    other => tracing::info!(event = %id, outcome = ?other, "stripe event"),
                }
                Ok(())
            }
        })
        .handle(GRACE_JOB, move |job| {
            let billing = checking.clone();
            async move {
                let tenant = job
                    .tenant_id
                    .ok_or_else(|| JobError::fatal("a grace check needs its tenant"))?;
                billing.check_grace(tenant).await.map_err(job_error)?;
                Ok(())
            }
        })
        .handle(SWEEP_JOB, move |_job| {
            let billing = billing.clone();
            async move {
                let entered = billing.sweep().await.map_err(job_error)?;
                tracing::info!(entered, "billing grace sweep");
                Ok(())
            }
        })
}

/// The hourly grace sweep.
pub fn cron() -> CronJob {
    CronJob {
        name: "billing-grace-sweep",
        schedule: "0 15 * * * *",
        job: || NewJob::new("system", SWEEP_JOB, serde_json::json!({})),
    }
}
