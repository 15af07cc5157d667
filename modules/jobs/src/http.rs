//! `GET /tenants/{tenant_id}/jobs/{id}` (`jobs:read`).

use std::sync::Arc;

use kernel::{ApiResult, Problem, TenantId, auth::Authorize, auth::BearerAuth};
use poem_openapi::{OpenApi, param::Path, payload::Json};
use uuid::Uuid;

use crate::JobView;

/// The permission of each operation, declared beside the routes (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[("get_job", JOBS_READ)];
const JOBS_READ: &str = "jobs:read";

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Background jobs.
    Jobs,
}

/// The tenant routes of the job runner.
pub struct TenantJobsApi {
    authz: Arc<dyn Authorize>,
}

impl TenantJobsApi {
    pub fn new(authz: Arc<dyn Authorize>) -> TenantJobsApi {
        TenantJobsApi { authz }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Jobs")]
impl TenantJobsApi {
    /// A job of the tenant: status, attempts, progress, last error.
    #[oai(
        path = "/tenants/:tenant_id/jobs/:id",
        method = "get",
        operation_id = "get_job"
    )]
    async fn get(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<JobView>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, JOBS_READ)
            .await?;
        let job = crate::get(&mut tx, id.0)
            .await?
            .ok_or_else(Problem::not_found)?;
        tx.commit().await?;
        Ok(Json(job))
    }
}
