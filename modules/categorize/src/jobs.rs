//! The pipeline's job: `categorize.run {…}` on the `categorize` queue, run as the system
//! in the job's tenant.

use crate::{Categorizer, domain::Run, service::RUN_JOB};

/// Registers the categorization's job handler.
pub fn register(registry: jobs::Registry, categorizer: Categorizer) -> jobs::Registry {
    registry.handle(RUN_JOB, move |job| {
        let categorizer = categorizer.clone();
        async move {
            let tenant = job
                .tenant_id
                .ok_or_else(|| jobs::JobError::fatal("a categorization job runs in a tenant"))?;
            let run: Run = serde_json::from_value(job.payload.clone())
                .map_err(|e| jobs::JobError::fatal(format!("the payload is no run: {e}")))?;
            categorizer
                .run(&job.db, tenant, &run, Some(&job))
                .await
                .map(|_| ())
                .map_err(|e| jobs::JobError::from(kernel::Problem::from(e)))
        }
    })
}
