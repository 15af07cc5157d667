//! Budgets' jobs: a tenant's evaluation after changes, and the daily one of every tenant.

use jobs::{CronJob, JobError, NewJob, Registry};

use crate::{
    Budgets,
    service::{DAILY_JOB, EVALUATE_JOB},
};

pub fn register(registry: Registry, budgets: Budgets) -> Registry {
    let one = budgets.clone();
    registry
        .handle(EVALUATE_JOB, move |job| {
            let budgets = one.clone();
            async move {
                let tenant = job
                    .tenant_id
                    .ok_or_else(|| JobError::fatal("an evaluation needs its tenant"))?;
                let alerted = budgets
                    .evaluate(tenant)
                    .await
                    .map_err(|e| JobError::from(kernel::Problem::from(e)))?;
                tracing::info!(%tenant, alerted, "budgets evaluated");
                Ok(())
            }
        })
        .handle(DAILY_JOB, move |_job| {
            let budgets = budgets.clone();
            async move {
                let alerted = budgets
                    .evaluate_all()
                    .await
                    .map_err(|e| JobError::from(kernel::Problem::from(e)))?;
                tracing::info!(alerted, "budgets of every tenant evaluated");
                Ok(())
            }
        })
}

/// Hourly: a period that begins at midnight in a tenant's time zone is evaluated within the
/// hour.
pub fn cron() -> CronJob {
    CronJob {
        name: "budgets-evaluate",
        schedule: "0 5 * * * *",
        job: || NewJob::new("system", DAILY_JOB, serde_json::json!({})),
    }
}
