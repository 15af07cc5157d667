//! The daily fetch of the ECB's file.

use jobs::{CronJob, JobError, NewJob, Registry};

use crate::Fx;

/// The job that fetches the ECB's daily file.
pub const DAILY_JOB: &str = "fx.fetch_daily";

pub fn register(registry: Registry, fx: Fx) -> Registry {
    registry.handle(DAILY_JOB, move |_job| {
        let fx = fx.clone();
        async move {
            // Never fatal: a failed fetch is retried, and conversions keep the rates known.
            match fx.fetch_daily().await {
                Ok(None) => tracing::debug!("no BALANCE_FX_DAILY_URL: the shipped rates only"),
                Ok(Some(written)) => tracing::info!(written, "ECB daily rates"),
                Err(e) => return Err(JobError::caused_by(&e)),
            }
            Ok(())
        }
    })
}

/// Daily, after the ECB publishes (about 16:00 CET).
pub fn cron() -> CronJob {
    CronJob {
        name: "fx-daily",
        schedule: "0 30 16 * * *",
        job: || NewJob::new("system", DAILY_JOB, serde_json::json!({})),
    }
}
