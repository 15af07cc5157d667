//! The access routes: `GET /api/v1/permissions` (the catalogue custom roles pick from) and
//! `/tenants/{tenant_id}/roles`. Thin: authorize, parse, call [`Roles`], map.

use std::sync::Arc;

use identity::{BearerAuth, Identity};
use kernel::{
    ApiResult, FieldErrors, LazyJson, Problem, TenantId, Validate,
    auth::Authorize,
    concurrency,
    idempotency::{self, Fingerprint, IdempotencyKey},
};
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Header, param::Path, payload::Json};
use serde::Deserialize;

use crate::{
    BUILTIN, Permission, Policy,
    service::{Role, RoleChange, RoleDefinition, RoleName, Roles, parse_set},
};

/// The permission of each role operation (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("list_roles", ROLES_READ),
    ("get_role", ROLES_READ),
    ("create_role", ROLES_WRITE),
    ("update_role", ROLES_WRITE),
    ("delete_role", ROLES_WRITE),
];
const ROLES_READ: &str = "roles:read";
const ROLES_WRITE: &str = "roles:write";

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Roles and permissions.
    Access,
}

/// The catalogue route.
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

kernel::page_object!(
    /// The tenant's roles: the built-in ones, then the custom ones by name (one page: a
    /// tenant has at most 100 custom roles).
    RoleList,
    Role
);

/// A new custom role.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// 1-40 characters: lowercase letters, digits, `_` and `-`, starting with a letter; not
    /// a built-in role's name.
    #[oai(validator(min_length = 1, max_length = 40, pattern = "^[a-z][a-z0-9_-]*$"))]
    pub name: String,
    /// Up to 500 characters.
    #[serde(default)]
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
    /// Permissions from `GET /api/v1/permissions`, none that the caller lacks.
    #[oai(validator(min_items = 1))]
    pub permissions: Vec<String>,
}

/// Changes to a custom role; at least one field.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePatch {
    /// Up to 500 characters.
    #[serde(default)]
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
    /// The complete new set of permissions.
    #[serde(default)]
    #[oai(validator(min_items = 1))]
    pub permissions: Option<Vec<String>>,
}

fn check_permissions(permissions: &[String], errors: &mut FieldErrors) {
    errors.check(
        !permissions.is_empty(),
        "permissions",
        "must name at least one permission",
    );
    for (i, p) in permissions.iter().enumerate() {
        if let Err(e) = p.parse::<Permission>() {
            errors.add(format!("permissions[{i}]"), e.to_string());
        }
    }
}

fn check_description(description: Option<&str>, errors: &mut FieldErrors) {
    if let Some(d) = description {
        errors.check(
            d.chars().count() <= 500,
            "description",
            "must be at most 500 characters",
        );
        errors.check(
            !d.chars().any(|c| c.is_control() && c != '\n'),
            "description",
            "must not contain control characters",
        );
    }
}

impl Validate for NewRole {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Err(e) = RoleName::parse(&self.name) {
            errors.add("name", e);
        }
        check_description(self.description.as_deref(), errors);
        check_permissions(&self.permissions, errors);
    }
}

impl Validate for RolePatch {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.check(
            self.description.is_some() || self.permissions.is_some(),
            "",
            "give `description`, `permissions` or both",
        );
        check_description(self.description.as_deref(), errors);
        if let Some(p) = &self.permissions {
            check_permissions(p, errors);
        }
    }
}

#[derive(ApiResponse)]
pub enum RoleCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<Role>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum RoleDeleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

/// The role routes.
pub struct RolesApi {
    authz: Arc<dyn Authorize>,
    roles: Roles,
}

impl RolesApi {
    pub fn new(authz: Arc<dyn Authorize>, roles: Roles) -> RolesApi {
        RolesApi { authz, roles }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Access")]
impl RolesApi {
    /// The tenant's roles: built-in ones first, then custom ones by name.
    #[oai(
        path = "/tenants/:tenant_id/roles",
        method = "get",
        operation_id = "list_roles"
    )]
    async fn list(&self, auth: BearerAuth, tenant_id: Path<TenantId>) -> ApiResult<Json<RoleList>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ROLES_READ)
            .await?;
        let data = self.roles.list(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(RoleList {
            data,
            next_cursor: None,
            has_more: false,
        }))
    }

    /// One role, built-in or custom.
    #[oai(
        path = "/tenants/:tenant_id/roles/:role",
        method = "get",
        operation_id = "get_role"
    )]
    async fn get(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        role: Path<String>,
    ) -> ApiResult<Json<Role>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ROLES_READ)
            .await?;
        let role = self.roles.get(&mut tx, &role.0).await?;
        tx.commit().await?;
        Ok(Json(role))
    }

    /// Creates a custom role from permissions the caller holds.
    #[oai(
        path = "/tenants/:tenant_id/roles",
        method = "post",
        operation_id = "create_role"
    )]
    async fn create(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewRole>,
    ) -> ApiResult<RoleCreated> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ROLES_WRITE)
            .await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_role", body.digest());
        let location = |name: &str| format!("/api/v1/tenants/{}/roles/{name}", tenant_id.0);
        if let Some(role) =
            idempotency::claim::<_, Role>(&mut tx, key.as_ref(), fingerprint, StatusCode::CREATED)
                .await?
        {
            let at = location(&role.name);
            return Ok(RoleCreated::Created(Json(role), at));
        }
        let new = body.into_inner();
        let definition = RoleDefinition {
            name: RoleName::parse(&new.name)
                .map_err(|e| Problem::validation(vec![kernel::FieldError::new("name", e)]))?,
            description: new.description.unwrap_or_default(),
            permissions: parse_set(&new.permissions),
        };
        let role = self.roles.create(&mut tx, definition).await?;
        idempotency::commit(tx, key.as_ref(), StatusCode::CREATED, &role).await?;
        let at = location(&role.name);
        Ok(RoleCreated::Created(Json(role), at))
    }

    /// Changes a custom role's description or permissions (`If-Match` with its version).
    /// Members holding it gain or lose those permissions at once, on every instance.
    #[oai(
        path = "/tenants/:tenant_id/roles/:role",
        method = "patch",
        operation_id = "update_role"
    )]
    async fn update(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        role: Path<String>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
        body: LazyJson<RolePatch>,
    ) -> ApiResult<Json<Role>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ROLES_WRITE)
            .await?;
        let patch = body.parse()?.into_inner();
        let expected = concurrency::if_match(if_match.0.as_deref())?;
        let change = RoleChange {
            description: patch.description,
            permissions: patch.permissions.as_deref().map(parse_set),
        };
        let role = self
            .roles
            .update(&mut tx, &role.0, expected, change)
            .await?;
        tx.commit().await?;
        Ok(Json(role))
    }

    /// Deletes a custom role nobody holds (members, live API keys, pending invitations).
    #[oai(
        path = "/tenants/:tenant_id/roles/:role",
        method = "delete",
        operation_id = "delete_role"
    )]
    async fn delete(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        role: Path<String>,
    ) -> ApiResult<RoleDeleted> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, ROLES_WRITE)
            .await?;
        self.roles.delete(&mut tx, &role.0).await?;
        tx.commit().await?;
        Ok(RoleDeleted::Deleted)
    }
}
