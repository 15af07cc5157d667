//! Custom roles and the access decision called the way a job or the bot calls them: with a
//! kernel handle from the test database, no HTTP in between.

use std::sync::Arc;

use access::{AccessError, Authorizer, Policy, PolicyStore, RoleDefinition, RoleName, Roles};
use audit::{AuditLog, Keys};
use identity::{Identity, IdentityConfig};
use kernel::{Actor, Db, Problem, TenantId, TenantTx, UserId, auth::Authorize};
use testkit::{db::TestDb, seed};

struct Env {
    _db: TestDb,
    kdb: Db,
    roles: Roles,
    authz: Authorizer,
}

impl Env {
    async fn new() -> Env {
        let db = TestDb::with_migrations().await.unwrap();
        let keys = Keys::from_seeds([("test-1", &[11u8; 32][..])]).unwrap();
        let audit: Arc<dyn kernel::CommitHook> = Arc::new(AuditLog::new(keys));
        let kdb = db.kernel_db([audit]).await.unwrap();
        let identity = Identity::new(
            kdb.clone(),
            IdentityConfig::ephemeral("http://balance.test".parse().unwrap()),
        );
        let policy = PolicyStore::new(Policy::load().unwrap());
        Env {
            roles: Roles::new(policy.clone()),
            authz: Authorizer::new(kdb.clone(), identity, policy),
            kdb,
            _db: db,
        }
    }

    async fn member(&self, tenant: TenantId, roles: &[&str]) -> UserId {
        let user = seed::user(&self.kdb).await;
        seed::member(&self.kdb, tenant, user, roles).await;
        user
    }
}

fn definition(name: &str, permissions: &[&str]) -> RoleDefinition {
    RoleDefinition {
        name: RoleName::parse(name).unwrap(),
        description: String::new(),
        permissions: permissions.iter().map(|p| p.parse().unwrap()).collect(),
    }
}

fn code(r: Result<TenantTx, Problem>) -> Result<(), String> {
    r.map(|_| ()).map_err(|p| p.code().to_string())
}

#[tokio::test]
async fn a_role_a_job_defines_grants_its_holders_at_once_and_nothing_more() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let role = env
        .roles
        .create(
            &mut tx,
            definition("auditor", &["events:read", "jobs:read"]),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(role.permissions, ["events:read", "jobs:read"]);

    let auditor = env.member(tenant, &["auditor"]).await;
    assert_eq!(
        code(
            env.authz
                .member(Actor::User(auditor), tenant, "events:read")
                .await
        ),
        Ok(())
    );
    assert_eq!(
        code(
            env.authz
                .member(Actor::User(auditor), tenant, "members:read")
                .await
        ),
        Err("forbidden".into())
    );
}

#[tokio::test]
async fn nobody_defines_or_widens_a_role_beyond_what_they_hold() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let admin = env.member(tenant, &["admin"]).await;
    let mut tx = env
        .authz
        .member(Actor::User(admin), tenant, "roles:write")
        .await
        .unwrap();
    let refused = env
        .roles
        .create(&mut tx, definition("payer", &["billing:write"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AccessError::Lacking(l) if l == &["billing:write"]),
        "{refused:?}"
    );
    assert_eq!(Problem::from(refused).code(), "cannot_grant");
    // Within what the admin holds, it works; built-in roles stay read-only.
    env.roles
        .create(&mut tx, definition("bookkeeper", &["transactions:write"]))
        .await
        .unwrap();
    let builtin = env.roles.delete(&mut tx, "viewer").await.unwrap_err();
    assert!(
        matches!(builtin, AccessError::RoleReadOnly(_)),
        "{builtin:?}"
    );
}

#[tokio::test]
async fn a_role_someone_holds_cannot_be_deleted_until_nobody_does() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    env.roles
        .create(&mut tx, definition("clerk", &["accounts:read"]))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    env.member(tenant, &["clerk"]).await;

    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let in_use = env.roles.delete(&mut tx, "clerk").await.unwrap_err();
    assert!(
        matches!(
            in_use,
            AccessError::RoleInUse {
                members: 1,
                keys: 0,
                invitations: 0,
                ..
            }
        ),
        "{in_use:?}"
    );
    assert_eq!(
        env.roles.list(&mut tx).await.unwrap().len(),
        access::BUILTIN.len() + 1
    );
}

#[tokio::test]
async fn narrowing_a_role_takes_its_permissions_from_every_holder_at_once() {
    let env = Env::new().await;
    let tenant = seed::tenant(&env.kdb, "Acme").await;
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let created = env
        .roles
        .create(
            &mut tx,
            definition("auditor", &["events:read", "jobs:read"]),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let auditor = env.member(tenant, &["auditor"]).await;
    // Warm the cache at this version, as a request would.
    assert_eq!(
        code(
            env.authz
                .member(Actor::User(auditor), tenant, "events:read")
                .await
        ),
        Ok(())
    );

    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let stale = env
        .roles
        .update(
            &mut tx,
            "auditor",
            Some(created.version + 1),
            access::RoleChange::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(Problem::from(stale).code(), "precondition_failed");
    drop(tx);
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let narrowed = env
        .roles
        .update(
            &mut tx,
            "auditor",
            Some(created.version),
            access::RoleChange {
                description: None,
                permissions: Some(["jobs:read".parse().unwrap()].into_iter().collect()),
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(narrowed.permissions, ["jobs:read"]);
    assert_eq!(narrowed.version, created.version + 1);

    assert_eq!(
        code(
            env.authz
                .member(Actor::User(auditor), tenant, "events:read")
                .await
        ),
        Err("forbidden".into()),
        "the cached grant did not outlive the change"
    );
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    assert_eq!(env.roles.get(&mut tx, "auditor").await.unwrap(), narrowed);
    assert!(env.roles.get(&mut tx, "viewer").await.unwrap().builtin);
}
