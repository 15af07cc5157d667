use std::sync::Arc;

use access::{Authorizer, Policy, PolicyStore};
use audit::{AuditLog, Keys};
use identity::{Identity, IdentityConfig};
use kernel::{Db, TenantId, UserId};
use tenancy::Tenancy;
use testkit::{db::TestDb, seed};

fn audit_hook(keys: Keys) -> Arc<dyn kernel::CommitHook> {
    Arc::new(AuditLog::new(keys))
}

/// A migrated database, the kernel's handle on it with the audit log installed, and the
/// services a job or the bot would get from the platform.
pub struct Env {
    pub _db: TestDb,
    pub kdb: Db,
    pub tenancy: Tenancy,
    pub authz: Authorizer,
}

impl Env {
    pub async fn new() -> Env {
        let db = TestDb::with_migrations().await.unwrap();
        let keys = Keys::from_seeds([("test-1", &[11u8; 32][..])]).unwrap();
        let kdb = db.kernel_db([audit_hook(keys)]).await.unwrap();
        let identity = Identity::new(
            kdb.clone(),
            IdentityConfig::ephemeral("http://balance.test".parse().unwrap()),
        );
        let policy = PolicyStore::new(Policy::load().unwrap());
        Env {
            tenancy: Tenancy::new(identity.clone(), policy.clone()),
            authz: Authorizer::new(kdb.clone(), identity, policy),
            kdb,
            _db: db,
        }
    }

    /// A tenant whose members have these roles; returns it and the members, in order.
    pub async fn tenant_with(&self, roles: &[&[&str]]) -> (TenantId, Vec<UserId>) {
        let tenant = seed::tenant(&self.kdb, "Acme").await;
        let mut users = Vec::new();
        for r in roles {
            let user = seed::user(&self.kdb).await;
            seed::member(&self.kdb, tenant, user, r).await;
            users.push(user);
        }
        (tenant, users)
    }
}
