//! `GET /api/v1/permissions`: the catalogue custom roles pick from.

use identity::{BearerAuth, Identity};
use kernel::ApiResult;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::{BUILTIN, Permission, Policy};

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Roles and permissions.
    Access,
}

/// The access routes.
pub struct AccessApi {
    identity: Identity,
    policy: Policy,
}

impl AccessApi {
    pub fn new(identity: Identity, policy: Policy) -> AccessApi {
        AccessApi { identity, policy }
    }
}

/// A built-in role and what it grants.
#[derive(Debug, Object)]
pub struct BuiltinRole {
    pub name: String,
    pub permissions: Vec<String>,
}

/// Every permission (`resource:action`), and the built-in roles' grants.
#[derive(Debug, Object)]
pub struct Catalogue {
    pub permissions: Vec<String>,
    pub builtin_roles: Vec<BuiltinRole>,
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Access")]
impl AccessApi {
    /// The permission catalogue: what custom roles pick from, and what the built-in roles hold.
    #[oai(
        path = "/permissions",
        method = "get",
        operation_id = "list_permissions"
    )]
    async fn permissions(&self, auth: BearerAuth) -> ApiResult<Json<Catalogue>> {
        self.identity.authenticate(auth.token()).await?;
        Ok(Json(Catalogue {
            permissions: Permission::all().iter().map(|p| p.to_string()).collect(),
            builtin_roles: BUILTIN
                .iter()
                .map(|r| BuiltinRole {
                    name: r.to_string(),
                    permissions: self
                        .policy
                        .builtin(r)
                        .unwrap_or_default()
                        .iter()
                        .map(|p| p.to_string())
                        .collect(),
                })
                .collect(),
        }))
    }
}
