//! The only way module code reaches the database: three transaction handles.
//!
//! - [`TenantTx`] sets `balance.tenant_id` (and `balance.user_id` for a user actor)
//!   transaction-locally, so row-level security confines every statement to one tenant;
//! - [`UserTx`] sets only `balance.user_id`: a user's own rows across tenants (`/me`);
//! - [`SystemTx`] sets nothing: global tables only (signup, login, webhook inboxes, the
//!   list of tenants a cron job iterates). Tenant rows are invisible to it.
//!
//! The settings are made in the same round trip as `BEGIN` and vanish at the end of the
//! transaction, so a pooled connection never carries one tenant's context into the next
//! transaction. Each handle carries the actor and the request context, and an extension
//! map where later modules buffer the unit of work's audit events and job pushes; the
//! [`CommitHook`]s installed on the [`Db`] write them just before `COMMIT`. Dropping a
//! handle without [`commit`](TenantTx::commit) rolls everything back.

use std::{net::IpAddr, sync::Arc};

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    context::RequestContext,
    ids::{TenantId, UserId},
    problem::Problem,
};

/// Who is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in person.
    User(UserId),
    /// An API key of the tenant.
    ApiKey(Uuid),
    /// Balance itself (a job, a cron tick, an operator command).
    System,
    /// A person acting through the Telegram bot.
    Telegram(UserId),
}

impl Actor {
    /// `user`, `api_key`, `system` or `telegram`, as in the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
            Actor::System => "system",
            Actor::Telegram(_) => "telegram",
        }
    }

    /// The actor's id, if it has one.
    pub fn id(&self) -> Option<Uuid> {
        match self {
            Actor::User(u) | Actor::Telegram(u) => Some(u.as_uuid()),
            Actor::ApiKey(k) => Some(*k),
            Actor::System => None,
        }
    }

    /// The person behind the action, if any.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Actor::User(u) | Actor::Telegram(u) => Some(*u),
            Actor::ApiKey(_) | Actor::System => None,
        }
    }
}

/// What a transaction is confined to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Tenant(TenantId),
    User(UserId),
    System,
}

/// The facts a transaction carries for the audit log and for logs.
#[derive(Debug, Clone)]
pub struct TxContext {
    pub scope: Scope,
    pub actor: Actor,
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub source_agent: &'static str,
}

impl TxContext {
    fn new(scope: Scope, actor: Actor) -> TxContext {
        let request = RequestContext::current();
        TxContext {
            scope,
            actor,
            request_id: request
                .as_ref()
                .map(|r| r.request_id.clone())
                .unwrap_or_default(),
            client_ip: request.as_ref().and_then(|r| r.client_ip),
            user_agent: request.as_ref().and_then(|r| r.user_agent.clone()),
            source_agent: request
                .as_ref()
                .map(|r| r.source_agent)
                .filter(|s| !s.is_empty())
                .unwrap_or("balance"),
        }
    }
}

/// What a [`CommitHook`] gets: the connection inside the transaction, its context, and the
/// extensions where the unit of work buffered what the hook writes.
pub struct CommitParts<'a> {
    pub conn: &'a mut PgConnection,
    pub context: &'a TxContext,
    pub extensions: &'a mut http::Extensions,
}

/// Work that runs inside every transaction just before `COMMIT` (appending buffered audit
/// events, pushing buffered jobs). An error rolls the whole transaction back.
pub trait CommitHook: Send + Sync + 'static {
    fn before_commit<'a>(&'a self, parts: CommitParts<'a>) -> BoxFuture<'a, Result<(), Problem>>;
}

/// The database as modules see it: transactions only, never the pool.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    hooks: Arc<Vec<Arc<dyn CommitHook>>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Wraps the runtime role's pool (in the composition root).
    pub fn new(pool: PgPool) -> Db {
        Db {
            pool,
            hooks: Arc::new(Vec::new()),
        }
    }

    /// Adds a hook that runs before every commit, after the ones added before it.
    #[must_use]
    pub fn with_hook(mut self, hook: Arc<dyn CommitHook>) -> Db {
        Arc::make_mut(&mut self.hooks).push(hook);
        self
    }

    async fn begin(&self, settings: &str, context: TxContext) -> Result<Inner, Problem> {
        // One round trip: BEGIN and the transaction-local settings in a simple query.
        let statement = format!("BEGIN; {settings}");
        let inner = self.pool.begin_with(sqlx::AssertSqlSafe(statement)).await?;
        Ok(Inner {
            inner,
            context,
            extensions: http::Extensions::new(),
            hooks: self.hooks.clone(),
        })
    }
}

struct Inner {
    inner: Transaction<'static, Postgres>,
    context: TxContext,
    extensions: http::Extensions,
    hooks: Arc<Vec<Arc<dyn CommitHook>>>,
}

impl Inner {
    async fn commit(mut self) -> Result<(), Problem> {
        for hook in self.hooks.iter() {
            let parts = CommitParts {
                conn: &mut self.inner,
                context: &self.context,
                extensions: &mut self.extensions,
            };
            hook.before_commit(parts).await?;
        }
        self.inner.commit().await?;
        Ok(())
    }
}

/// What every handle offers, for code that works in any scope (sending mail, enqueueing).
pub trait Tx: Send {
    /// The connection, inside this transaction.
    fn conn(&mut self) -> &mut PgConnection;
    /// Actor, request id, client IP, user agent.
    fn context(&self) -> &TxContext;
    /// Typed buffers of this unit of work.
    fn extensions_mut(&mut self) -> &mut http::Extensions;
}

macro_rules! handle {
    ($name:ident) => {
        impl Tx for $name {
            fn conn(&mut self) -> &mut PgConnection {
                &mut self.0.inner
            }
            fn context(&self) -> &TxContext {
                &self.0.context
            }
            fn extensions_mut(&mut self) -> &mut http::Extensions {
                &mut self.0.extensions
            }
        }

        impl $name {
            /// The connection, inside this transaction, for store functions.
            pub fn conn(&mut self) -> &mut PgConnection {
                &mut self.0.inner
            }

            /// Actor, request id, client IP, user agent.
            pub fn context(&self) -> &TxContext {
                &self.0.context
            }

            /// Typed buffers of this unit of work (audit events, job pushes).
            pub fn extensions_mut(&mut self) -> &mut http::Extensions {
                &mut self.0.extensions
            }

            /// What the unit of work carries (e.g. the access decision's grants).
            pub fn extensions(&self) -> &http::Extensions {
                &self.0.extensions
            }

            /// Runs the commit hooks, then commits.
            pub async fn commit(self) -> Result<(), Problem> {
                self.0.commit().await
            }

            /// Rolls back explicitly (dropping the handle does the same).
            pub async fn rollback(self) -> Result<(), Problem> {
                self.0.inner.rollback().await?;
                Ok(())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name))
                    .field(&self.0.context)
                    .finish()
            }
        }
    };
}

/// A transaction confined to one tenant's rows.
pub struct TenantTx(Inner);
/// A transaction that sees one user's rows across tenants, and global tables.
pub struct UserTx(Inner);
/// A transaction on global tables only.
pub struct SystemTx(Inner);

handle!(TenantTx);
handle!(UserTx);
handle!(SystemTx);

impl TenantTx {
    /// Begins a transaction in `tenant_id`'s rows, acting as `actor`.
    pub async fn begin(db: &Db, tenant_id: TenantId, actor: Actor) -> Result<TenantTx, Problem> {
        // UUIDs print as hex and dashes: safe to inline.
        let user = actor.user_id().map(|u| u.to_string()).unwrap_or_default();
        let settings = format!(
            "SELECT set_config('balance.tenant_id', '{tenant_id}', true), set_config('balance.user_id', '{user}', true)"
        );
        Ok(TenantTx(
            db.begin(&settings, TxContext::new(Scope::Tenant(tenant_id), actor))
                .await?,
        ))
    }

    /// Makes a transaction begun by `Actor::System` act for an API key of its tenant: the
    /// authorizer finds the key inside the request's own transaction, so the key's lookup
    /// and the work share one snapshot. No other actor changes (an API key sets no user).
    pub fn act_as_api_key(&mut self, key: Uuid) {
        assert!(
            matches!(self.0.context.actor, Actor::System),
            "only a system transaction takes on an API key"
        );
        self.0.context.actor = Actor::ApiKey(key);
    }

    /// The tenant this transaction is confined to.
    pub fn tenant_id(&self) -> TenantId {
        match self.0.context.scope {
            Scope::Tenant(t) => t,
            _ => unreachable!("a TenantTx always has a tenant scope"),
        }
    }
}

impl UserTx {
    /// Begins a transaction over `user_id`'s own rows.
    pub async fn begin(db: &Db, user_id: UserId) -> Result<UserTx, Problem> {
        let settings = format!("SELECT set_config('balance.user_id', '{user_id}', true)");
        Ok(UserTx(
            db.begin(
                &settings,
                TxContext::new(Scope::User(user_id), Actor::User(user_id)),
            )
            .await?,
        ))
    }

    /// The user this transaction acts for.
    pub fn user_id(&self) -> UserId {
        match self.0.context.scope {
            Scope::User(u) => u,
            _ => unreachable!("a UserTx always has a user scope"),
        }
    }
}

impl SystemTx {
    /// Begins a transaction on global tables.
    pub async fn begin(db: &Db, actor: Actor) -> Result<SystemTx, Problem> {
        Ok(SystemTx(
            db.begin("SELECT 1", TxContext::new(Scope::System, actor))
                .await?,
        ))
    }
}
