//! The import job: `imports.run {import_id}` on the `imports` queue, run as the system in
//! the import's tenant.

use uuid::Uuid;

use crate::{Imports, service::RUN_JOB};

/// Registers the imports' job handler.
pub fn register(registry: jobs::Registry, imports: Imports) -> jobs::Registry {
    registry.handle(RUN_JOB, move |job| {
        let imports = imports.clone();
        async move {
            let tenant = job
                .tenant_id
                .ok_or_else(|| jobs::JobError::fatal("an import job runs in a tenant"))?;
            let id = job
                .payload
                .get("import_id")
                .and_then(|v| v.as_str())
                .and_then(|v| Uuid::parse_str(v).ok())
                .ok_or_else(|| jobs::JobError::fatal("the payload names no import_id"))?;
            imports
                .run(&job.db, tenant, id)
                .await
                .map_err(|e| jobs::JobError::from(kernel::Problem::from(e)))
        }
    })
}
