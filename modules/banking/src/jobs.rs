//! The banking jobs: one connection's sync, and the schedule that queues the due ones.

use std::sync::Arc;

use kernel::RequestContext;
use serde::Deserialize;
use uuid::Uuid;

use crate::{Banking, SCHEDULE_JOB, SYNC_JOB, service::SyncRun};

#[derive(Deserialize)]
struct SyncPayload {
    connection_id: Uuid,
}

/// Registers the banking jobs.
pub fn register(registry: jobs::Registry, banking: Banking) -> jobs::Registry {
    let sync = banking.clone();
    registry
        .handle(SYNC_JOB, move |job| {
            let banking = sync.clone();
            async move {
                let tenant = job
                    .tenant_id
                    .ok_or_else(|| jobs::JobError::fatal("a bank sync runs in a tenant"))?;
                let payload: SyncPayload = serde_json::from_value(job.payload.clone())
                    .map_err(|e| jobs::JobError::fatal(format!("the payload is no sync: {e}")))?;
                let context = Arc::new(RequestContext::background("bank-sync", job.id.to_string()));
                let run = context
                    .scope(banking.sync(&job.db, tenant, payload.connection_id, Some(job.id)))
                    .await?;
                if let SyncRun::Stopped(code) = run {
                    tracing::info!(
                        code,
                        "a bank sync stopped: the connection waits for a person"
                    );
                }
                Ok(())
            }
        })
        .handle(SCHEDULE_JOB, move |job| {
            let banking = banking.clone();
            async move {
                let context = Arc::new(RequestContext::background(
                    "bank-schedule",
                    job.id.to_string(),
                ));
                let queued = context.scope(banking.schedule(&job.db)).await?;
                tracing::info!(queued, "bank syncs due");
                Ok(())
            }
        })
}

/// The hourly schedule that queues connections not synced for six hours.
pub fn cron() -> jobs::CronJob {
    jobs::CronJob {
        name: "bank-sync-schedule",
        schedule: "0 15 * * * *",
        job: || jobs::NewJob::new("system", SCHEDULE_JOB, serde_json::json!({})),
    }
}
