//! Granting: nobody grants a permission they lack, and only an owner grants `owner`
//! (DESIGN.md §4). Used by member role changes, invitations, API keys and custom roles.

use kernel::{Actor, FieldError, Problem, TenantTx};
use poem::http::StatusCode;

use crate::{PermissionSet, PolicyStore};

/// What a list of role names grants in the transaction's tenant, read in that transaction:
/// built-in roles from the policy, custom roles from `tenant_roles`. With `lock` (roles being
/// granted) they are locked `FOR SHARE`, so a concurrent delete of the role waits for this
/// grant and then finds the role in use. Returns the names that are no role of this tenant.
pub async fn role_sets(
    store: &PolicyStore,
    tx: &mut TenantTx,
    names: &[String],
    lock: bool,
) -> Result<(PermissionSet, Vec<String>), Problem> {
    let custom: Vec<&String> = names
        .iter()
        .filter(|n| store.builtin().builtin(n).is_none())
        .collect();
    let mut set = store.builtin().union(names);
    if custom.is_empty() {
        return Ok((set, Vec::new()));
    }
    let sql = if lock {
        "SELECT name, permissions FROM tenant_roles WHERE tenant_id = $1 AND name = ANY($2)
         ORDER BY name FOR SHARE"
    } else {
        "SELECT name, permissions FROM tenant_roles WHERE tenant_id = $1 AND name = ANY($2)"
    };
    let rows: Vec<(String, Vec<String>)> = sqlx::query_as(sql)
        .bind(tx.tenant_id())
        .bind(&custom)
        .fetch_all(tx.conn())
        .await?;
    let compiled = crate::TenantRoles::compile(0, rows);
    let mut unknown = Vec::new();
    for name in custom {
        match compiled.get(name) {
            Some(s) => set = set.union(s),
            None => unknown.push(name.clone()),
        }
    }
    Ok((set, unknown))
}

/// The roles the transaction's actor holds in its tenant: a member's roles, an API key's
/// roles, or everything for Balance itself.
pub async fn caller_roles(tx: &mut TenantTx) -> Result<Vec<String>, Problem> {
    let tenant = tx.tenant_id();
    let roles: Option<Vec<String>> = match tx.context().actor {
        Actor::User(user) | Actor::Telegram(user) => {
            sqlx::query_scalar(
                "SELECT roles FROM memberships WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant)
            .bind(user)
            .fetch_optional(tx.conn())
            .await?
        }
        Actor::ApiKey(id) => {
            sqlx::query_scalar("SELECT roles FROM api_keys WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(tx.conn())
                .await?
        }
        Actor::System => Some(vec!["owner".to_string()]),
    };
    Ok(roles.unwrap_or_default())
}

/// `403 cannot_grant`.
pub fn cannot_grant(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "cannot_grant", "Cannot grant").with_detail(detail)
}

/// What the caller holds in the transaction's tenant, and whether that includes `owner`.
/// The caller's own roles are read without a lock: two callers editing each other's roles
/// would otherwise deadlock.
pub async fn held(
    store: &PolicyStore,
    tx: &mut TenantTx,
) -> Result<(PermissionSet, bool), Problem> {
    let mine = caller_roles(tx).await?;
    let (set, _) = role_sets(store, tx, &mine, false).await?;
    Ok((set, mine.iter().any(|r| r == "owner")))
}

/// Checks roles to be given (to a member, an invitation or an API key): each is a role of
/// this tenant (`422` otherwise, on `field`), together they grant nothing the caller lacks,
/// and `owner` only from an owner (`403 cannot_grant`). API keys grant nothing: a leaked or
/// short-lived key must not mint a longer-lived one, invite outsiders or change roles.
pub async fn check_grant(
    store: &PolicyStore,
    tx: &mut TenantTx,
    roles: &[String],
    field: &str,
) -> Result<(), Problem> {
    if matches!(tx.context().actor, Actor::ApiKey(_)) {
        return Err(cannot_grant(
            "API keys cannot grant roles (members, invitations, API keys); sign in as a member.",
        ));
    }
    let (wanted, unknown) = role_sets(store, tx, roles, true).await?;
    if !unknown.is_empty() {
        return Err(Problem::validation(vec![FieldError::new(
            field,
            format!(
                "unknown role(s) {unknown:?}: the built-in roles are {:?}, and GET /api/v1/tenants/{}/roles lists this tenant's custom roles",
                crate::BUILTIN,
                tx.tenant_id()
            ),
        )]));
    }
    let (held, owner) = held(store, tx).await?;
    if !wanted.is_subset(&held) {
        return Err(lacking(wanted, held));
    }
    if roles.iter().any(|r| r == "owner") && !owner {
        return Err(cannot_grant("Only an owner grants `owner`."));
    }
    Ok(())
}

/// `403 cannot_grant`, naming what the caller lacks.
pub fn lacking(wanted: PermissionSet, held: PermissionSet) -> Problem {
    let missing: Vec<String> = wanted
        .iter()
        .filter(|p| !held.contains(*p))
        .map(|p| p.to_string())
        .collect();
    cannot_grant(format!(
        "Nobody grants a permission they lack; you lack {missing:?}."
    ))
}
