//! Granting: nobody grants a permission they lack, and only an owner grants `owner`
//! (DESIGN.md §4). Used by member role changes, invitations, API keys and custom roles.

use kernel::{Actor, RoleNames, TenantTx};

use crate::{AccessError, PermissionSet, PolicyStore, store};

/// What the transaction's actor holds in its tenant, as the access decision found it. The
/// authorizer puts it in the transaction's extensions; grant checks read it from there.
#[derive(Debug, Clone)]
pub struct Grants {
    roles: Vec<String>,
    permissions: PermissionSet,
    accounts: Option<Vec<uuid::Uuid>>,
}

impl Grants {
    pub(crate) fn new(roles: Vec<String>, permissions: PermissionSet) -> Grants {
        Grants {
            roles,
            permissions,
            accounts: None,
        }
    }

    pub(crate) fn with_accounts(mut self, accounts: Option<Vec<uuid::Uuid>>) -> Grants {
        self.accounts = accounts;
        self
    }

    /// The accounts the actor may see; `None`: every account of the tenant.
    pub fn accounts(&self) -> Option<&[uuid::Uuid]> {
        self.accounts.as_deref()
    }

    /// The actor's roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Everything those roles grant.
    pub fn permissions(&self) -> PermissionSet {
        self.permissions
    }

    /// Whether the actor is an owner.
    pub fn is_owner(&self) -> bool {
        self.roles.iter().any(|r| r == "owner")
    }
}

/// What a list of role names grants in the transaction's tenant, read in that transaction:
/// built-in roles from the policy, custom roles from `tenant_roles`. With `lock` (roles being
/// granted) they are locked `FOR SHARE`, so a concurrent delete of the role waits for this
/// grant and then finds the role in use. Returns the names that are no role of this tenant.
pub async fn role_sets(
    policy: &PolicyStore,
    tx: &mut TenantTx,
    names: &[String],
    lock: bool,
) -> Result<(PermissionSet, Vec<String>), AccessError> {
    let custom: Vec<String> = names
        .iter()
        .filter(|n| policy.builtin().builtin(n).is_none())
        .cloned()
        .collect();
    let mut set = policy.builtin().union(names);
    if custom.is_empty() {
        return Ok((set, Vec::new()));
    }
    let tenant = tx.tenant_id();
    let rows = store::roles_named(tx.conn(), tenant, &custom, lock).await?;
    let compiled =
        crate::TenantRoles::compile(0, rows.into_iter().map(|r| (r.name, r.permissions)));
    let mut unknown = Vec::new();
    for name in custom {
        match compiled.get(&name) {
            Some(s) => set = set.union(s),
            None => unknown.push(name),
        }
    }
    Ok((set, unknown))
}

/// What the transaction's actor holds: the access decision's [`Grants`] when it made one;
/// otherwise (a transaction a job began for a person, or Balance itself) read here —
/// everything for Balance itself. The actor's roles are read without a lock: two callers
/// editing each other's roles would otherwise deadlock.
pub async fn held(policy: &PolicyStore, tx: &mut TenantTx) -> Result<Grants, AccessError> {
    if let Some(grants) = tx.extensions().get::<Grants>() {
        return Ok(grants.clone());
    }
    let tenant = tx.tenant_id();
    let roles = match tx.context().actor {
        Actor::User(user) | Actor::Telegram(user) => {
            store::member_roles(tx.conn(), tenant, user).await?
        }
        Actor::ApiKey(id) => store::api_key_roles(tx.conn(), tenant, id).await?,
        Actor::System => Some(vec!["owner".to_string()]),
    }
    .unwrap_or_default();
    let (permissions, _) = role_sets(policy, tx, &roles, false).await?;
    let grants = Grants::new(roles, permissions);
    tx.extensions_mut().insert(grants.clone());
    Ok(grants)
}

/// Checks roles to be given (to a member, an invitation or an API key): each is a role of
/// this tenant (`422` otherwise, on `field`), together they grant nothing the caller lacks,
/// and `owner` only from an owner (`403 cannot_grant`). API keys grant nothing: a leaked or
/// short-lived key must not mint a longer-lived one, invite outsiders or change roles.
pub async fn check_grant(
    policy: &PolicyStore,
    tx: &mut TenantTx,
    roles: &RoleNames,
    field: &str,
) -> Result<(), AccessError> {
    if matches!(tx.context().actor, Actor::ApiKey(_)) {
        return Err(AccessError::CannotGrant(
            "API keys cannot grant roles (members, invitations, API keys); sign in as a member.",
        ));
    }
    let (wanted, unknown) = role_sets(policy, tx, roles.as_slice(), true).await?;
    if !unknown.is_empty() {
        return Err(AccessError::UnknownRoles {
            field: field.to_string(),
            unknown,
            tenant: tx.tenant_id(),
        });
    }
    check_owner_grant(policy, tx, wanted, roles.includes_owner()).await
}

/// Checks that the caller holds every permission of `wanted` (`403 cannot_grant`), and is
/// an owner when `owner` is among what is granted.
pub async fn check_owner_grant(
    policy: &PolicyStore,
    tx: &mut TenantTx,
    wanted: PermissionSet,
    owner: bool,
) -> Result<(), AccessError> {
    let held = held(policy, tx).await?;
    if !wanted.is_subset(&held.permissions()) {
        return Err(AccessError::lacking(wanted, held.permissions()));
    }
    if owner && !held.is_owner() {
        return Err(AccessError::CannotGrant("Only an owner grants `owner`."));
    }
    Ok(())
}

/// Which of the `granted` roles a holder of the `holder` roles could grant now: each role
/// whose permissions the holder holds, and `owner` only to an owner. An API key or a
/// pending invitation keeps these when its creator's rights shrink, and nothing else.
pub async fn still_grantable(
    policy: &PolicyStore,
    tx: &mut TenantTx,
    holder: &[String],
    granted: &[String],
) -> Result<Vec<String>, AccessError> {
    let (held, _) = role_sets(policy, tx, holder, false).await?;
    let holder_is_owner = holder.iter().any(|r| r == "owner");
    let mut kept = Vec::new();
    for role in granted {
        if role == "owner" {
            if holder_is_owner {
                kept.push(role.clone());
            }
            continue;
        }
        let (set, unknown) = role_sets(policy, tx, std::slice::from_ref(role), false).await?;
        if unknown.is_empty() && set.is_subset(&held) {
            kept.push(role.clone());
        }
    }
    Ok(kept)
}

/// The accounts to grant (to a member, an invitation or an API key), checked against what
/// the caller sees: each must be an account of the tenant the caller can see (the account
/// scope of the caller's own transaction hides the others, so one count decides), and a
/// caller confined to some accounts grants no more than those (`None` becomes theirs).
pub async fn check_accounts(
    policy: &PolicyStore,
    tx: &mut TenantTx,
    wanted: Option<Vec<uuid::Uuid>>,
    field: &str,
) -> Result<Option<Vec<uuid::Uuid>>, AccessError> {
    let held = held(policy, tx).await?;
    let Some(mut wanted) = wanted else {
        return Ok(held.accounts().map(<[uuid::Uuid]>::to_vec));
    };
    wanted.sort();
    wanted.dedup();
    let tenant = tx.tenant_id();
    let visible = store::visible_accounts(tx.conn(), tenant, &wanted).await?;
    if visible != wanted.len() as i64 {
        return Err(AccessError::Invalid(kernel::FieldError::new(
            field,
            "names accounts that are not accounts of this tenant you can see",
        )));
    }
    Ok(Some(wanted))
}
