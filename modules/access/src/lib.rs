//! Authorization (DESIGN.md §4): casbin is the policy source — the model and the built-in
//! roles are files in `policies/` — and the request path uses permission sets compiled from
//! it: every role becomes a bitset over the permission catalogue, so a decision is a bit test.

mod authorizer;
mod error;
pub mod grants;
mod http;
mod policy;
mod service;
mod store;

use std::{collections::BTreeMap, fmt, str::FromStr};

use casbin::{CoreApi, DefaultModel, MemoryAdapter, MgmtApi};

pub use authorizer::Authorizer;
pub use error::AccessError;
pub use grants::Grants;
pub use http::{AccessApi, PERMISSIONS, RolesApi};
pub use policy::{CHANNEL, PolicyStore, TenantRoles};
pub use service::{
    MAX_CUSTOM_ROLES, Role, RoleChange, RoleDefinition, RoleName, Roles, bump_policy,
};

const MODEL: &str = include_str!("../../../policies/model.conf");
const BUILTIN_ROLES: &str = include_str!("../../../policies/builtin_roles.csv");

/// The resources of the catalogue; each has `read` and `write` (`write` covers create,
/// update and delete) except where noted.
const RESOURCES: &[(&str, &[&str])] = &[
    ("tenant", &["read", "write", "delete"]),
    ("members", &["read", "write"]),
    ("invitations", &["read", "write"]),
    ("roles", &["read", "write"]),
    ("api_keys", &["read", "write"]),
    ("events", &["read"]),
    ("jobs", &["read"]),
    ("billing", &["read", "write"]),
    ("accounts", &["read", "write"]),
    ("transactions", &["read", "write"]),
    ("imports", &["read", "write"]),
    ("categories", &["read", "write"]),
    ("rules", &["read", "write"]),
    ("approvals", &["read", "write"]),
    ("budgets", &["read", "write"]),
    ("goals", &["read", "write"]),
    ("bank_connections", &["read", "write"]),
    ("notifications", &["read"]),
];

/// The built-in roles, which nobody can edit.
pub const BUILTIN: &[&str] = &["owner", "admin", "accountant", "viewer", "billing"];

/// One permission of the catalogue, `resource:action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(u8);

/// A string that names no permission of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a permission (see GET /api/v1/permissions)")]
pub struct UnknownPermission(pub String);

fn catalogue_entries() -> impl Iterator<Item = (&'static str, &'static str)> {
    RESOURCES
        .iter()
        .flat_map(|(r, actions)| actions.iter().map(move |a| (*r, *a)))
}

impl Permission {
    /// Every permission, in catalogue order.
    pub fn all() -> Vec<Permission> {
        (0..catalogue_entries().count() as u8)
            .map(Permission)
            .collect()
    }

    pub fn resource(&self) -> &'static str {
        catalogue_entries()
            .nth(self.0 as usize)
            .expect("in the catalogue")
            .0
    }

    pub fn action(&self) -> &'static str {
        catalogue_entries()
            .nth(self.0 as usize)
            .expect("in the catalogue")
            .1
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource(), self.action())
    }
}

impl FromStr for Permission {
    type Err = UnknownPermission;
    fn from_str(s: &str) -> Result<Permission, UnknownPermission> {
        let (resource, action) = s
            .split_once(':')
            .ok_or_else(|| UnknownPermission(s.to_string()))?;
        catalogue_entries()
            .position(|(r, a)| r == resource && a == action)
            .map(|i| Permission(i as u8))
            .ok_or_else(|| UnknownPermission(s.to_string()))
    }
}

/// A set of permissions: one bit per catalogue entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u128);

impl PermissionSet {
    pub fn contains(&self, p: Permission) -> bool {
        self.0 & (1u128 << p.0) != 0
    }

    pub fn insert(&mut self, p: Permission) {
        self.0 |= 1u128 << p.0;
    }

    /// Everything either set holds (a member with several roles).
    pub fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    /// What both sets hold (an API key acts with its roles and its creator's, whichever is
    /// less).
    pub fn intersect(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }

    /// Whether every permission of `self` is in `other` (nobody grants what they lack).
    pub fn is_subset(&self, other: &PermissionSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        Permission::all().into_iter().filter(|p| self.contains(*p))
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> PermissionSet {
        let mut set = PermissionSet::default();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// Drives a future that never waits on I/O (casbin over an in-memory adapter) to completion.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// Why the policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the casbin policy: {0}")]
    Casbin(#[from] casbin::Error),
    #[error("policies/builtin_roles.csv line {0} is not `p, role, domain, resource, action`")]
    Line(usize),
}

/// The built-in roles, compiled from the casbin policy into permission sets.
#[derive(Debug, Clone)]
pub struct Policy {
    builtin: BTreeMap<&'static str, PermissionSet>,
}

impl Policy {
    /// Loads `policies/` (embedded at build time) into casbin and compiles each built-in
    /// role by asking casbin about every permission of the catalogue. Synchronous: the
    /// policy is in memory, so casbin's futures complete without waiting on anything.
    pub fn load() -> Result<Policy, PolicyError> {
        block_on(Self::load_async())
    }

    async fn load_async() -> Result<Policy, PolicyError> {
        let enforcer = Self::enforcer().await?;
        let mut builtin = BTreeMap::new();
        for role in BUILTIN {
            let mut set = PermissionSet::default();
            for p in Permission::all() {
                if enforcer.enforce((*role, "any-tenant", p.resource(), p.action()))? {
                    set.insert(p);
                }
            }
            builtin.insert(*role, set);
        }
        Ok(Policy { builtin })
    }

    /// casbin with the model and the built-in roles of `policies/`.
    async fn enforcer() -> Result<casbin::Enforcer, PolicyError> {
        let model = DefaultModel::from_str(MODEL).await?;
        let mut enforcer = casbin::Enforcer::new(model, MemoryAdapter::default()).await?;
        let mut rules = Vec::new();
        for (n, line) in BUILTIN_ROLES.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<String> = line.split(',').map(|f| f.trim().to_string()).collect();
            if fields.len() != 5 || fields[0] != "p" {
                return Err(PolicyError::Line(n + 1));
            }
            rules.push(fields[1..].to_vec());
        }
        enforcer.add_policies(rules).await?;
        Ok(enforcer)
    }

    /// Everything a set of roles grants (unknown roles grant nothing).
    pub fn union<S: AsRef<str>>(&self, roles: &[S]) -> PermissionSet {
        roles
            .iter()
            .filter_map(|r| self.builtin(r.as_ref()))
            .fold(PermissionSet::default(), PermissionSet::union)
    }

    /// A built-in role's permissions.
    pub fn builtin(&self, role: &str) -> Option<PermissionSet> {
        self.builtin.get(role).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(perms: &[&str]) -> PermissionSet {
        perms
            .iter()
            .map(|p| p.parse::<Permission>().unwrap())
            .collect()
    }

    const DOMAIN: [&str; 9] = [
        "accounts",
        "transactions",
        "imports",
        "categories",
        "rules",
        "approvals",
        "budgets",
        "goals",
        "bank_connections",
    ];

    fn domain(actions: &[&str]) -> Vec<String> {
        DOMAIN
            .iter()
            .flat_map(|r| actions.iter().map(move |a| format!("{r}:{a}")))
            .collect()
    }

    #[test]
    fn the_builtin_roles_grant_exactly_the_table_of_api_md() {
        let policy = Policy::load().unwrap();
        let with = |fixed: &[&str], domain_actions: &[&str]| {
            let mut all: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
            all.extend(domain(domain_actions));
            set(&all.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let admin = with(
            &[
                "tenant:read",
                "tenant:write",
                "members:read",
                "members:write",
                "invitations:read",
                "invitations:write",
                "roles:read",
                "roles:write",
                "api_keys:read",
                "api_keys:write",
                "events:read",
                "jobs:read",
                "billing:read",
                "notifications:read",
            ],
            &["read", "write"],
        );
        let expected = [
            (
                "owner",
                Permission::all().into_iter().collect::<PermissionSet>(),
            ),
            ("admin", admin),
            (
                "accountant",
                with(
                    &[
                        "tenant:read",
                        "members:read",
                        "roles:read",
                        "events:read",
                        "jobs:read",
                        "notifications:read",
                    ],
                    &["read", "write"],
                ),
            ),
            (
                "viewer",
                with(
                    &[
                        "tenant:read",
                        "members:read",
                        "roles:read",
                        "notifications:read",
                    ],
                    &["read"],
                ),
            ),
            (
                "billing",
                with(
                    &[
                        "tenant:read",
                        "members:read",
                        "billing:read",
                        "billing:write",
                        "notifications:read",
                    ],
                    &[],
                ),
            ),
        ];
        for (role, want) in expected {
            let got = policy.builtin(role).unwrap();
            let missing: Vec<String> = want
                .iter()
                .filter(|p| !got.contains(*p))
                .map(|p| p.to_string())
                .collect();
            let extra: Vec<String> = got
                .iter()
                .filter(|p| !want.contains(*p))
                .map(|p| p.to_string())
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{role}: missing {missing:?}, extra {extra:?}"
            );
        }
        assert!(
            policy
                .builtin("admin")
                .unwrap()
                .is_subset(&policy.builtin("owner").unwrap())
        );
        assert!(
            !policy
                .builtin("owner")
                .unwrap()
                .is_subset(&policy.builtin("admin").unwrap()),
            "nobody grants what they lack"
        );
    }

    /// Custom roles are casbin policies in their tenant's domain (`p, role, tenant, resource,
    /// action`, members `g, user, role, tenant`); the compiled sets the request path uses
    /// must decide exactly as casbin does, including across tenants.
    #[test]
    fn compiled_custom_roles_decide_exactly_as_casbin() {
        use crate::{PolicyStore, TenantRoles};
        use kernel::TenantId;
        let policy = Policy::load().unwrap();
        let store = PolicyStore::new(policy.clone());
        let (a, b) = (TenantId::new(), TenantId::new());
        let custom: Vec<(TenantId, &str, Vec<&str>)> = vec![
            (a, "auditor", vec!["tenant:read", "events:read"]),
            (a, "payer", vec!["billing:read", "billing:write"]),
            (b, "auditor", vec!["members:read"]),
            (
                b,
                "bookkeeper",
                vec!["transactions:write", "categories:read", "rules:write"],
            ),
        ];
        for tenant in [a, b] {
            let roles = custom
                .iter()
                .filter(|(t, _, _)| *t == tenant)
                .map(|(_, n, p)| (*n, p.clone()));
            store.install(tenant, std::sync::Arc::new(TenantRoles::compile(1, roles)));
        }
        let members: Vec<(&str, TenantId, Vec<&str>)> = vec![
            ("u1", a, vec!["auditor"]),
            ("u1", b, vec!["viewer", "bookkeeper"]),
            ("u2", a, vec!["payer", "accountant"]),
            ("u2", b, vec!["auditor"]),
            ("u3", a, vec!["bookkeeper"]), // b's role: nothing in a
            ("u3", b, vec!["owner"]),
        ];
        block_on(async {
            let mut enforcer = Policy::enforcer().await.unwrap();
            let mut rules = Vec::new();
            for (tenant, role, perms) in &custom {
                for p in perms {
                    let (r, act) = p.split_once(':').unwrap();
                    rules.push(vec![
                        role.to_string(),
                        tenant.to_string(),
                        r.into(),
                        act.into(),
                    ]);
                }
            }
            enforcer.add_policies(rules).await.unwrap();
            let grouping = members
                .iter()
                .flat_map(|(user, tenant, roles)| {
                    roles
                        .iter()
                        .map(move |r| vec![user.to_string(), r.to_string(), tenant.to_string()])
                })
                .collect();
            enforcer.add_grouping_policies(grouping).await.unwrap();
            let mut decisions = 0;
            for (user, tenant, roles) in &members {
                let compiled = store.resolve(*tenant, 1, roles).unwrap();
                for p in Permission::all() {
                    let casbin = enforcer
                        .enforce((*user, tenant.to_string().as_str(), p.resource(), p.action()))
                        .unwrap();
                    assert_eq!(compiled.contains(p), casbin, "{user} in {tenant}: {p}");
                    decisions += 1;
                }
            }
            assert_eq!(decisions, members.len() * Permission::all().len());
        });
        // A cache older than the tenant's version is not used: the caller reloads first.
        assert_eq!(store.resolve(a, 2, &["auditor"]), None);
        assert!(
            store.resolve(a, 2, &["viewer"]).is_some(),
            "built-ins need no cache"
        );
        // An older load never replaces a newer one.
        store.install(
            a,
            std::sync::Arc::new(TenantRoles::compile(0, Vec::<(&str, Vec<&str>)>::new())),
        );
        assert_eq!(store.cached_version(a), Some(1));
    }

    #[test]
    fn permissions_parse_only_from_the_catalogue() {
        assert_eq!(Permission::all().len(), 34);
        for p in Permission::all() {
            assert_eq!(p.to_string().parse::<Permission>().unwrap(), p);
        }
        for bad in [
            "",
            "tenant",
            "tenant:fly",
            "events:write",
            "Tenant:read",
            "tenant:read:x",
        ] {
            assert!(bad.parse::<Permission>().is_err(), "{bad}");
        }
    }
}
