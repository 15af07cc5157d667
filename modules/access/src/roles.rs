//! `/tenants/{tenant_id}/roles`: the built-in roles (read-only) and the tenant's custom roles,
//! each a name and permissions picked from the catalogue. Nobody defines a role with a
//! permission they lack; a role still held by a member, a live API key or a pending
//! invitation cannot be deleted.

use std::sync::Arc;

use audit::{NewEvent, Record};
use chrono::{DateTime, Utc};
use kernel::{
    ApiResult, FieldErrors, LazyJson, Problem, TenantId, TenantTx, Validate,
    auth::{Authorize, BearerAuth},
    concurrency,
    idempotency::{self, Fingerprint, IdempotencyKey},
};
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Header, param::Path, payload::Json};
use serde::Deserialize;
use serde_json::json;

use crate::{
    BUILTIN, Permission, PermissionSet, PolicyStore,
    grants::{held, lacking},
    store::bump_policy,
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

/// Custom roles a tenant may define.
pub const MAX_CUSTOM_ROLES: i64 = 100;

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Roles and permissions.
    Access,
}

/// A role: built-in (read-only) or custom.
#[derive(Debug, Clone, Object)]
pub struct Role {
    /// `owner`, `admin`, `accountant`, `viewer`, `billing`, or a custom role's name.
    pub name: String,
    /// Built-in roles come from `policies/` and cannot be changed.
    pub builtin: bool,
    pub description: String,
    /// `resource:action` pairs, in catalogue order.
    pub permissions: Vec<String>,
    /// For `If-Match`; built-in roles stay at 1.
    pub version: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

kernel::page_object!(
    /// The tenant's roles: the built-in ones, then the custom ones by name (one page: a
    /// tenant has at most 100 custom roles).
    RoleList,
    Role
);

fn builtin_description(name: &str) -> &'static str {
    match name {
        "owner" => "Everything, including deleting the tenant and granting owner.",
        "admin" => {
            "Runs the workspace: members, roles, API keys and all money data; not billing changes or deletion."
        }
        "accountant" => "Reads and writes the money data; reads members, events and jobs.",
        "viewer" => "Reads the money data.",
        "billing" => "Manages the plan and payment.",
        _ => "",
    }
}

fn names(set: PermissionSet) -> Vec<String> {
    set.iter().map(|p| p.to_string()).collect()
}

/// `name, description, permissions, version, created_at, updated_at`.
type RoleRow = (
    String,
    String,
    Vec<String>,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn custom(r: RoleRow) -> Role {
    // Stored in catalogue order already; re-sorting drops anything the catalogue lost.
    let set: PermissionSet = r.2.iter().filter_map(|p| p.parse().ok()).collect();
    Role {
        name: r.0,
        builtin: false,
        description: r.1,
        permissions: names(set),
        version: r.3,
        created_at: Some(r.4),
        updated_at: Some(r.5),
    }
}

/// A new custom role.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// 1-40 characters: lowercase letters, digits, `_` and `-`, starting with a letter; not
    /// a built-in role's name.
    pub name: String,
    /// Up to 500 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Permissions from `GET /api/v1/permissions`, none that the caller lacks.
    pub permissions: Vec<String>,
}

/// Changes to a custom role; at least one field.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePatch {
    #[serde(default)]
    pub description: Option<String>,
    /// The complete new set of permissions.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
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
        errors.check(
            valid_name(&self.name),
            "name",
            "must be 1-40 characters of a-z, 0-9, `_` and `-`, starting with a letter",
        );
        errors.check(
            !BUILTIN.contains(&self.name.as_str()),
            "name",
            "is a built-in role",
        );
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

fn parse_set(permissions: &[String]) -> PermissionSet {
    permissions.iter().filter_map(|p| p.parse().ok()).collect()
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

fn read_only(name: &str) -> Problem {
    Problem::new(StatusCode::CONFLICT, "role_read_only", "Built-in role").with_detail(format!(
        "`{name}` is a built-in role; built-in roles cannot be changed or deleted. Create a custom role instead."
    ))
}

/// The role routes.
pub struct RolesApi {
    authz: Arc<dyn Authorize>,
    store: PolicyStore,
}

impl RolesApi {
    pub fn new(authz: Arc<dyn Authorize>, store: PolicyStore) -> RolesApi {
        RolesApi { authz, store }
    }

    fn builtin_role(&self, name: &str) -> Option<Role> {
        let set = self.store.builtin().builtin(name)?;
        Some(Role {
            name: name.to_string(),
            builtin: true,
            description: builtin_description(name).to_string(),
            permissions: names(set),
            version: 1,
            created_at: None,
            updated_at: None,
        })
    }
}

async fn custom_role(
    tx: &mut TenantTx,
    name: &str,
    lock: bool,
) -> Result<Option<RoleRow>, Problem> {
    let sql = if lock {
        "SELECT name, description, permissions, version, created_at, updated_at FROM tenant_roles
         WHERE tenant_id = $1 AND name = $2 FOR UPDATE"
    } else {
        "SELECT name, description, permissions, version, created_at, updated_at FROM tenant_roles
         WHERE tenant_id = $1 AND name = $2"
    };
    Ok(sqlx::query_as(sql)
        .bind(tx.tenant_id())
        .bind(name)
        .fetch_optional(tx.conn())
        .await?)
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
        let rows: Vec<RoleRow> = sqlx::query_as(
            "SELECT name, description, permissions, version, created_at, updated_at FROM tenant_roles
             WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant_id.0)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        let data = BUILTIN
            .iter()
            .filter_map(|r| self.builtin_role(r))
            .chain(rows.into_iter().map(custom))
            .collect();
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
        if let Some(b) = self.builtin_role(&role.0) {
            tx.commit().await?;
            return Ok(Json(b));
        }
        let row = custom_role(&mut tx, &role.0, false).await?;
        tx.commit().await?;
        row.map(|r| Json(custom(r))).ok_or_else(Problem::not_found)
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
        let wanted = parse_set(&new.permissions);
        let (mine, _) = held(&self.store, &mut tx).await?;
        if !wanted.is_subset(&mine) {
            return Err(lacking(wanted, mine));
        }
        // The bump locks the tenant's row: concurrent creations count one after another.
        let version = bump_policy(&mut tx).await?;
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tenant_roles WHERE tenant_id = $1")
                .bind(tenant_id.0)
                .fetch_one(tx.conn())
                .await?;
        if count >= MAX_CUSTOM_ROLES {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "role_limit_reached",
                "Too many custom roles",
            )
            .with_detail(format!(
                "A tenant has at most {MAX_CUSTOM_ROLES} custom roles; delete one first."
            )));
        }
        let actor = tx.context().actor.id();
        let row: Option<RoleRow> = sqlx::query_as(
            "INSERT INTO tenant_roles (tenant_id, name, description, permissions, created_by)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
             RETURNING name, description, permissions, version, created_at, updated_at",
        )
        .bind(tenant_id.0)
        .bind(&new.name)
        .bind(new.description.as_deref().unwrap_or(""))
        .bind(names(wanted))
        .bind(actor)
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else {
            return Err(
                Problem::new(StatusCode::CONFLICT, "role_exists", "Role exists")
                    .with_detail(format!("This tenant already has a role `{}`.", new.name)),
            );
        };
        let role = custom(row);
        tx.record(
            NewEvent::new("role.created")
                .resource("role", &role.name)
                .payload(json!({ "permissions": role.permissions, "policy_version": version })),
        );
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
        if BUILTIN.contains(&role.0.as_str()) {
            return Err(read_only(&role.0));
        }
        let Some(current) = custom_role(&mut tx, &role.0, true).await? else {
            return Err(Problem::not_found());
        };
        concurrency::check(expected, current.3)?;
        let before = parse_set(&current.2);
        let after = patch
            .permissions
            .as_deref()
            .map(parse_set)
            .unwrap_or(before);
        let (mine, _) = held(&self.store, &mut tx).await?;
        if !before.union(after).is_subset(&mine) {
            return Err(lacking(before.union(after), mine));
        }
        let description = patch.description.unwrap_or_else(|| current.1.clone());
        let row: RoleRow = sqlx::query_as(
            "UPDATE tenant_roles SET description = $3, permissions = $4, version = version + 1, updated_at = now()
             WHERE tenant_id = $1 AND name = $2
             RETURNING name, description, permissions, version, created_at, updated_at",
        )
        .bind(tenant_id.0)
        .bind(&role.0)
        .bind(&description)
        .bind(names(after))
        .fetch_one(tx.conn())
        .await?;
        let policy_version = if after != before {
            Some(bump_policy(&mut tx).await?)
        } else {
            None
        };
        let added: Vec<String> = after
            .iter()
            .filter(|p| !before.contains(*p))
            .map(|p| p.to_string())
            .collect();
        let removed: Vec<String> = before
            .iter()
            .filter(|p| !after.contains(*p))
            .map(|p| p.to_string())
            .collect();
        tx.record(
            NewEvent::new("role.updated")
                .resource("role", &role.0)
                .payload(json!({
                    "added": added,
                    "removed": removed,
                    "description_changed": description != current.1,
                    "policy_version": policy_version,
                })),
        );
        tx.commit().await?;
        Ok(Json(custom(row)))
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
        if BUILTIN.contains(&role.0.as_str()) {
            return Err(read_only(&role.0));
        }
        // Locked first: a grant of this role in flight holds it FOR SHARE, so its member
        // is counted below once it commits.
        let Some(current) = custom_role(&mut tx, &role.0, true).await? else {
            return Err(Problem::not_found());
        };
        // Nobody removes a role more powerful than their own.
        let permissions = parse_set(&current.2);
        let (mine, _) = held(&self.store, &mut tx).await?;
        if !permissions.is_subset(&mine) {
            return Err(lacking(permissions, mine));
        }
        let (members, keys, invitations): (i64, i64, i64) = sqlx::query_as(
            "SELECT
               (SELECT count(*) FROM memberships WHERE tenant_id = $1 AND $2 = ANY(roles)),
               (SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND $2 = ANY(roles)
                  AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())),
               (SELECT count(*) FROM invitations WHERE tenant_id = $1 AND $2 = ANY(roles)
                  AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now())",
        )
        .bind(tenant_id.0)
        .bind(&role.0)
        .fetch_one(tx.conn())
        .await?;
        if members + keys + invitations > 0 {
            return Err(
                Problem::new(StatusCode::CONFLICT, "role_in_use", "Role in use").with_detail(
                    format!(
                        "`{}` is held by {members} member(s), {keys} API key(s) and {invitations} pending invitation(s); give them other roles first.",
                        role.0
                    ),
                ),
            );
        }
        sqlx::query("DELETE FROM tenant_roles WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id.0)
            .bind(&role.0)
            .execute(tx.conn())
            .await?;
        let version = bump_policy(&mut tx).await?;
        tx.record(
            NewEvent::new("role.deleted")
                .resource("role", &role.0)
                .payload(json!({ "permissions": custom(current).permissions, "policy_version": version })),
        );
        tx.commit().await?;
        Ok(RoleDeleted::Deleted)
    }
}
