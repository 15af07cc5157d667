//! Custom roles (`/tenants/{tenant_id}/roles`): the built-in roles (read-only) and the
//! tenant's own, each a name and permissions picked from the catalogue. Nobody defines,
//! changes or deletes a role with a permission they lack; a role still held by a member, a
//! live API key or a pending invitation cannot be deleted. Every function takes the
//! tenant's transaction, so the bot, a job or the CLI call them as the routes do.

use audit::{NewEvent, Record};
use chrono::{DateTime, Utc};
use kernel::TenantTx;
use poem_openapi::Object;
use serde_json::json;

use crate::{
    AccessError, BUILTIN, PermissionSet, PolicyStore, grants::check_owner_grant, policy::CHANNEL,
    store,
};

/// Custom roles a tenant may define.
pub const MAX_CUSTOM_ROLES: i64 = 100;

/// A role: built-in (read-only) or custom.
#[derive(Debug, Clone, PartialEq, Object)]
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
    /// `null` for built-in roles.
    pub created_at: Option<DateTime<Utc>>,
    /// `null` for built-in roles.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A custom role's name: 1-40 characters of `a-z`, `0-9`, `_` and `-`, starting with a
/// letter, and not a built-in role's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    /// Why `raw` is no custom role's name, if it is not one.
    pub fn parse(raw: &str) -> Result<RoleName, &'static str> {
        let mut chars = raw.chars();
        let shaped = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && raw.len() <= 40
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !shaped {
            return Err("must be 1-40 characters of a-z, 0-9, `_` and `-`, starting with a letter");
        }
        if BUILTIN.contains(&raw) {
            return Err("is a built-in role");
        }
        Ok(RoleName(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new custom role, parsed.
#[derive(Debug, Clone)]
pub struct RoleDefinition {
    pub name: RoleName,
    pub description: String,
    pub permissions: PermissionSet,
}

/// Changes to a custom role: a new description, a complete new permission set, or both.
#[derive(Debug, Clone, Default)]
pub struct RoleChange {
    pub description: Option<String>,
    pub permissions: Option<PermissionSet>,
}

fn names(set: PermissionSet) -> Vec<String> {
    set.iter().map(|p| p.to_string()).collect()
}

/// The permissions of the catalogue among `permissions` (others grant nothing).
pub(crate) fn parse_set(permissions: &[String]) -> PermissionSet {
    permissions.iter().filter_map(|p| p.parse().ok()).collect()
}

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

fn custom(r: store::RoleRow) -> Role {
    // Stored in catalogue order already; re-sorting drops anything the catalogue lost.
    Role {
        name: r.name,
        builtin: false,
        description: r.description,
        permissions: names(parse_set(&r.permissions)),
        version: r.version,
        created_at: Some(r.created_at),
        updated_at: Some(r.updated_at),
    }
}

/// Records a role or membership change of the transaction's tenant: bumps its
/// `policy_version` (locking the tenant's row, so concurrent changes apply one after
/// another) and announces it to every instance at commit. Membership changes bump it too.
/// The cache does not need that (a member's roles are read at every decision); it keeps one
/// rule — every change to who holds what moves the version — so the versions in audit
/// payloads order all access changes of a tenant.
///
/// What the access decision found for the actor may no longer hold after the change (an
/// owner who just stepped down, a narrowed role), so it is dropped from the transaction:
/// the next grant check in this unit of work reads the actor's roles again.
pub async fn bump_policy(tx: &mut TenantTx) -> Result<i64, AccessError> {
    tx.extensions_mut().remove::<crate::Grants>();
    let tenant = tx.tenant_id();
    Ok(store::bump_policy(tx.conn(), tenant, CHANNEL).await?)
}

/// The role rules, over the instance's compiled policy.
#[derive(Clone)]
pub struct Roles {
    policy: PolicyStore,
}

impl Roles {
    pub fn new(policy: PolicyStore) -> Roles {
        Roles { policy }
    }

    fn builtin_role(&self, name: &str) -> Option<Role> {
        let set = self.policy.builtin().builtin(name)?;
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

    /// The tenant's roles: the built-in ones, then the custom ones by name (at most 100).
    pub async fn list(&self, tx: &mut TenantTx) -> Result<Vec<Role>, AccessError> {
        let tenant = tx.tenant_id();
        let rows = store::list_roles(tx.conn(), tenant).await?;
        Ok(BUILTIN
            .iter()
            .filter_map(|r| self.builtin_role(r))
            .chain(rows.into_iter().map(custom))
            .collect())
    }

    /// One role, built-in or custom.
    pub async fn get(&self, tx: &mut TenantTx, name: &str) -> Result<Role, AccessError> {
        if let Some(b) = self.builtin_role(name) {
            return Ok(b);
        }
        let tenant = tx.tenant_id();
        store::role(tx.conn(), tenant, name, false)
            .await?
            .map(custom)
            .ok_or(AccessError::NotFound)
    }

    /// Creates a custom role from permissions the caller holds.
    pub async fn create(
        &self,
        tx: &mut TenantTx,
        new: RoleDefinition,
    ) -> Result<Role, AccessError> {
        check_owner_grant(&self.policy, tx, new.permissions, false).await?;
        // The bump locks the tenant's row: concurrent creations count one after another.
        let version = bump_policy(tx).await?;
        let tenant = tx.tenant_id();
        if store::count_roles(tx.conn(), tenant).await? >= MAX_CUSTOM_ROLES {
            return Err(AccessError::RoleLimit(MAX_CUSTOM_ROLES));
        }
        let actor = tx.context().actor.id();
        let Some(row) = store::insert_role(
            tx.conn(),
            tenant,
            new.name.as_str(),
            &new.description,
            &names(new.permissions),
            actor,
        )
        .await?
        else {
            return Err(AccessError::RoleExists(new.name.0));
        };
        let role = custom(row);
        tx.record(
            NewEvent::new("role.created")
                .resource("role", &role.name)
                .payload(json!({ "permissions": role.permissions, "policy_version": version })),
        );
        Ok(role)
    }

    /// Changes a custom role. `expected` is the `If-Match` version, if the caller sent one.
    /// Members holding the role gain or lose its permissions at once, on every instance.
    pub async fn update(
        &self,
        tx: &mut TenantTx,
        name: &str,
        expected: Option<i64>,
        change: RoleChange,
    ) -> Result<Role, AccessError> {
        if BUILTIN.contains(&name) {
            return Err(AccessError::RoleReadOnly(name.to_string()));
        }
        let tenant = tx.tenant_id();
        let Some(current) = store::role(tx.conn(), tenant, name, true).await? else {
            return Err(AccessError::NotFound);
        };
        kernel::concurrency::check(expected, current.version)?;
        let before = parse_set(&current.permissions);
        let after = change.permissions.unwrap_or(before);
        check_owner_grant(&self.policy, tx, before.union(after), false).await?;
        let description = change
            .description
            .unwrap_or_else(|| current.description.clone());
        let row = store::update_role(tx.conn(), tenant, name, &description, &names(after)).await?;
        let policy_version = if after != before {
            Some(bump_policy(tx).await?)
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
                .resource("role", name)
                .payload(json!({
                    "added": added,
                    "removed": removed,
                    "description_changed": description != current.description,
                    "policy_version": policy_version,
                })),
        );
        Ok(custom(row))
    }

    /// Deletes a custom role nobody holds (members, live API keys, pending invitations).
    pub async fn delete(&self, tx: &mut TenantTx, name: &str) -> Result<(), AccessError> {
        if BUILTIN.contains(&name) {
            return Err(AccessError::RoleReadOnly(name.to_string()));
        }
        let tenant = tx.tenant_id();
        // Locked first: a grant of this role in flight holds it FOR SHARE, so its member
        // is counted below once it commits.
        let Some(current) = store::role(tx.conn(), tenant, name, true).await? else {
            return Err(AccessError::NotFound);
        };
        // Nobody removes a role more powerful than their own.
        check_owner_grant(&self.policy, tx, parse_set(&current.permissions), false).await?;
        let holders = store::role_holders(tx.conn(), tenant, name).await?;
        if holders.members + holders.keys + holders.invitations > 0 {
            return Err(AccessError::RoleInUse {
                role: name.to_string(),
                members: holders.members,
                keys: holders.keys,
                invitations: holders.invitations,
            });
        }
        store::delete_role(tx.conn(), tenant, name).await?;
        let version = bump_policy(tx).await?;
        tx.record(
            NewEvent::new("role.deleted")
                .resource("role", name)
                .payload(json!({ "permissions": custom(current).permissions, "policy_version": version })),
        );
        Ok(())
    }
}
