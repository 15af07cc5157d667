//! The compiled policy every instance keeps in memory (DESIGN.md §4): the built-in roles, and
//! each tenant's custom roles compiled into permission sets at that tenant's
//! `policy_version`.
//!
//! A decision reads the member's roles and the tenant's `policy_version` in the request's
//! own transaction and compares the version with the cached one: an older cache is reloaded
//! in that transaction first, so a missed notice can never leave a stale grant. Notices
//! (`NOTIFY balance_policy, '<tenant>:<version>'`, sent by every change) and reconnects of the
//! listener reload ahead of use, so requests rarely pay for a reload.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use kernel::{Actor, Db, Problem, SystemTx, TenantId, TenantTx};
use sqlx::{PgConnection, PgPool, postgres::PgListener};
use uuid::Uuid;

use crate::{Permission, PermissionSet, Policy, store};

/// The channel role and membership changes are announced on.
pub const CHANNEL: &str = "balance_policy";

/// One tenant's custom roles, compiled, as of `version`.
#[derive(Debug, Default)]
pub struct TenantRoles {
    pub version: i64,
    roles: HashMap<Box<str>, PermissionSet>,
}

impl TenantRoles {
    /// Compiles custom roles; permissions no longer in the catalogue grant nothing.
    pub fn compile<N: AsRef<str>, P: AsRef<str>>(
        version: i64,
        roles: impl IntoIterator<Item = (N, Vec<P>)>,
    ) -> TenantRoles {
        let roles = roles
            .into_iter()
            .map(|(name, permissions)| {
                let set = permissions
                    .iter()
                    .filter_map(|p| match p.as_ref().parse::<Permission>() {
                        Ok(p) => Some(p),
                        Err(e) => {
                            tracing::warn!(role = name.as_ref(), error = %e, "ignoring a permission");
                            None
                        }
                    })
                    .collect();
                (Box::from(name.as_ref()), set)
            })
            .collect();
        TenantRoles { version, roles }
    }

    pub fn get(&self, role: &str) -> Option<PermissionSet> {
        self.roles.get(role).copied()
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }
}

/// The policy state of one instance, shared by its authorizer and the role routes.
#[derive(Clone)]
pub struct PolicyStore {
    inner: Arc<Inner>,
}

struct Inner {
    builtin: Policy,
    tenants: RwLock<HashMap<TenantId, Arc<TenantRoles>>>,
    /// Where to listen, once [`PolicyStore::listen`] was called; the listener starts with
    /// the first cached tenant (with nothing cached there is nothing to keep current).
    listener: std::sync::Mutex<Listener>,
}

#[derive(Default)]
enum Listener {
    #[default]
    Off,
    Armed(PgPool, Db),
    Running,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("tenants", &self.cached_tenants())
            .finish()
    }
}

impl PolicyStore {
    pub fn new(builtin: Policy) -> PolicyStore {
        PolicyStore {
            inner: Arc::new(Inner {
                builtin,
                tenants: RwLock::default(),
                listener: Default::default(),
            }),
        }
    }

    /// The built-in roles.
    pub fn builtin(&self) -> &Policy {
        &self.inner.builtin
    }

    /// The in-memory decision: what `roles` grant in `tenant` at `version`, or `None` when
    /// a custom role is involved and the cache is older than `version` (reload first).
    /// Built-in roles never change while running, so they need no cache.
    pub fn resolve<S: AsRef<str>>(
        &self,
        tenant: TenantId,
        version: i64,
        roles: &[S],
    ) -> Option<PermissionSet> {
        let mut set = PermissionSet::default();
        let mut custom = false;
        for role in roles {
            match self.inner.builtin.builtin(role.as_ref()) {
                Some(b) => set = set.union(b),
                None => custom = true,
            }
        }
        if !custom {
            return Some(set);
        }
        let tenants = self.inner.tenants.read().expect("policy lock");
        let cached = tenants.get(&tenant).filter(|t| t.version >= version)?;
        Some(
            roles
                .iter()
                .filter_map(|r| cached.get(r.as_ref()))
                .fold(set, PermissionSet::union),
        )
    }

    /// What `roles` grant in the transaction's tenant at `version` (read in that same
    /// transaction), reloading the tenant's custom roles in it when the cache is older.
    pub async fn permissions<S: AsRef<str>>(
        &self,
        tx: &mut TenantTx,
        version: i64,
        roles: &[S],
    ) -> Result<PermissionSet, Problem> {
        let tenant = tx.tenant_id();
        if let Some(set) = self.resolve(tenant, version, roles) {
            return Ok(set);
        }
        let loaded = self.load(tx.conn(), tenant).await?;
        let builtin = self.inner.builtin.union(roles);
        Ok(roles
            .iter()
            .filter_map(|r| loaded.get(r.as_ref()))
            .fold(builtin, PermissionSet::union))
    }

    /// Reads a tenant's custom roles and version in one statement (the connection is in
    /// that tenant's transaction) and caches them.
    async fn load(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<Arc<TenantRoles>, sqlx::Error> {
        let rows = store::tenant_policy(conn, tenant).await?;
        let version = rows.first().map(|r| r.policy_version).unwrap_or(0);
        let compiled = Arc::new(TenantRoles::compile(
            version,
            rows.into_iter()
                .filter_map(|r| Some((r.name?, r.permissions?))),
        ));
        Ok(self.install(tenant, compiled))
    }

    /// Caches a tenant's compiled roles unless a newer version is cached already; returns
    /// what is cached afterwards.
    pub fn install(&self, tenant: TenantId, roles: Arc<TenantRoles>) -> Arc<TenantRoles> {
        let installed = {
            let mut tenants = self.inner.tenants.write().expect("policy lock");
            match tenants.get(&tenant) {
                Some(current) if current.version > roles.version => current.clone(),
                _ => {
                    tenants.insert(tenant, roles.clone());
                    roles
                }
            }
        };
        self.start_listener();
        installed
    }

    /// The cached version of a tenant's custom roles, if any are cached.
    pub fn cached_version(&self, tenant: TenantId) -> Option<i64> {
        self.inner
            .tenants
            .read()
            .expect("policy lock")
            .get(&tenant)
            .map(|t| t.version)
    }

    /// How many tenants are cached, and how many custom roles they hold.
    pub fn cached_tenants(&self) -> (usize, usize) {
        let tenants = self.inner.tenants.read().expect("policy lock");
        (tenants.len(), tenants.values().map(|t| t.len()).sum())
    }

    /// Reloads one cached tenant in its own transaction (after a notice).
    async fn reload(&self, db: &Db, tenant: TenantId) -> Result<(), Problem> {
        let mut tx = TenantTx::begin(db, tenant, Actor::System).await?;
        self.load(tx.conn(), tenant).await?;
        tx.commit().await
    }

    /// After a notice `<tenant>:<version>`: reloads the tenant when it is cached and older.
    async fn on_notice(&self, db: &Db, payload: &str) {
        let Some((tenant, version)) = payload.split_once(':').and_then(|(t, v)| {
            Some((
                TenantId::from_uuid(t.parse::<Uuid>().ok()?),
                v.parse::<i64>().ok()?,
            ))
        }) else {
            tracing::warn!(payload, "ignoring a malformed policy notice");
            return;
        };
        if self.cached_version(tenant).is_some_and(|v| v < version)
            && let Err(e) = self.reload(db, tenant).await
        {
            // The version compared on use still protects the next request.
            tracing::warn!(%tenant, error = ?e, "policy reload after a notice failed");
        }
    }

    /// After (re)connecting: notices may have been missed, so every cached tenant whose
    /// version moved is reloaded, and purged tenants are dropped.
    pub async fn refresh(&self, db: &Db) -> Result<usize, Problem> {
        let cached: Vec<(Uuid, i64)> = {
            let tenants = self.inner.tenants.read().expect("policy lock");
            tenants
                .iter()
                .map(|(t, r)| (t.as_uuid(), r.version))
                .collect()
        };
        if cached.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = cached.iter().map(|c| c.0).collect();
        let mut tx = SystemTx::begin(db, Actor::System).await?;
        let current: HashMap<Uuid, i64> = store::policy_versions(tx.conn(), &ids)
            .await?
            .into_iter()
            .map(|v| (v.id, v.policy_version))
            .collect();
        tx.commit().await?;
        let mut reloaded = 0;
        for (tenant, version) in cached {
            let tenant = TenantId::from_uuid(tenant);
            match current.get(&tenant.as_uuid()) {
                None => {
                    self.inner
                        .tenants
                        .write()
                        .expect("policy lock")
                        .remove(&tenant);
                }
                Some(v) if *v > version => match self.reload(db, tenant).await {
                    Ok(()) => reloaded += 1,
                    // The version compared on use still covers this tenant.
                    Err(e) => tracing::warn!(%tenant, error = ?e, "policy reload failed"),
                },
                Some(_) => {}
            }
        }
        Ok(reloaded)
    }

    /// Keeps this instance current: from the first cached tenant on, a task listens for
    /// policy notices (for as long as the runtime runs), reconnecting with backoff and
    /// refreshing every cached tenant after each (re)connect.
    pub fn listen(&self, pool: PgPool, db: Db) {
        let mut listener = self.inner.listener.lock().expect("listener lock");
        if matches!(*listener, Listener::Off) {
            *listener = Listener::Armed(pool, db);
        }
        drop(listener);
        if self.cached_tenants().0 > 0 {
            self.start_listener();
        }
    }

    fn start_listener(&self) {
        let mut listener = self.inner.listener.lock().expect("listener lock");
        if !matches!(*listener, Listener::Armed(..)) {
            return;
        }
        if let Listener::Armed(pool, db) = std::mem::replace(&mut *listener, Listener::Running) {
            let store = self.clone();
            tokio::spawn(async move { store.run_listener(pool, db).await });
        }
    }

    async fn run_listener(self, pool: PgPool, db: Db) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let connected = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = match connected.await {
                Ok(l) => l,
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "policy listener cannot listen; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            self.refresh_logged(&db, "connected").await;
            loop {
                match listener.try_recv().await {
                    Ok(Some(notice)) => self.on_notice(&db, notice.payload()).await,
                    // The connection was lost and has been re-established (LISTEN included);
                    // what was announced meanwhile is caught up here.
                    Ok(None) => self.refresh_logged(&db, "reconnected").await,
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "policy listener lost its connection");
                        tokio::time::sleep(backoff).await;
                        break;
                    }
                }
            }
        }
    }

    async fn refresh_logged(&self, db: &Db, why: &'static str) {
        match self.refresh(db).await {
            Ok(reloaded) => tracing::info!(why, reloaded, "policy listener ready"),
            Err(e) => tracing::warn!(why, error = ?e, "policy refresh failed"),
        }
    }
}
