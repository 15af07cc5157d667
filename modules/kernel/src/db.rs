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
//! transaction. A [`FirstRead`] (the access decision, the session check) rides in that
//! round trip too, after the settings: a tenant request is `BEGIN` + settings + decision,
//! the work, `COMMIT`. Each handle carries the actor and the request context, and an extension
//! map where later modules buffer the unit of work's audit events and job pushes; the
//! [`CommitHook`]s installed on the [`Db`] write them just before `COMMIT`. Dropping a
//! handle without [`commit`](TenantTx::commit) rolls everything back.

use std::{net::IpAddr, sync::Arc};

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Postgres, pool::PoolConnection, postgres::PgRow};
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

    /// `BEGIN`, the transaction-local settings and the first read, in one round trip: one
    /// simple query, so the settings are made before the read runs and all of it is one
    /// transaction. A failure rolls back before it returns.
    async fn begin(
        &self,
        settings: &str,
        first: Option<FirstRead>,
        context: TxContext,
    ) -> Result<(Inner, Vec<PgRow>), Problem> {
        let mut conn = self.pool.acquire().await?;
        let mut statement = String::from("BEGIN");
        if !settings.is_empty() {
            statement.push_str("; ");
            statement.push_str(settings);
        }
        if let Some(first) = &first {
            statement.push_str("; ");
            statement.push_str(&first.sql);
        }
        // Safe: the settings and the read's arguments are UUIDs and hex (`FirstRead`).
        let rows = match sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .fetch_all(&mut *conn)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                finish(conn, "ROLLBACK").await;
                return Err(e.into());
            }
        };
        let inner = Inner {
            conn: Some(conn),
            context,
            extensions: http::Extensions::new(),
            hooks: self.hooks.clone(),
        };
        Ok((inner, rows))
    }
}

/// Ends an abandoned transaction: `ROLLBACK`, or the connection is closed (the server then
/// rolls back) when that fails.
async fn finish(mut conn: PoolConnection<Postgres>, statement: &'static str) {
    if sqlx::raw_sql(statement).execute(&mut *conn).await.is_err() {
        conn.close_on_drop();
    }
}

/// A read that rides in the round trip of `BEGIN`, after the settings (the access decision,
/// the session check): a store's statement whose `$n` parameters are inlined as literals,
/// because a multi-statement simple query takes no parameters. Only values that print as
/// hex digits and dashes can be arguments, so no argument can change the statement. The
/// statement must not contain `$` otherwise (no dollar quoting, no `$` in literals).
#[derive(Debug, Clone)]
pub struct FirstRead {
    sql: String,
}

/// An argument of a [`FirstRead`].
#[derive(Debug, Clone, Copy)]
pub enum Literal<'a> {
    Uuid(Uuid),
    /// A `bytea[]`.
    ByteaArray(&'a [Vec<u8>]),
}

impl Literal<'_> {
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Literal::Uuid(u) => {
                let _ = write!(out, "'{u}'::uuid");
            }
            Literal::ByteaArray(items) => {
                out.push_str("ARRAY[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "decode('{}','hex')", crate::hex::encode(item));
                }
                out.push_str("]::bytea[]");
            }
        }
    }
}

impl FirstRead {
    /// `sql` with `$1`…`$n` replaced by `args`. A parameter without an argument panics: a
    /// programming error that the statement's first test finds.
    pub fn new(sql: &str, args: &[Literal<'_>]) -> FirstRead {
        let mut out = String::with_capacity(sql.len() + args.len() * 48);
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 1..];
            let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
            assert!(digits > 0, "a `$` that is no parameter in a FirstRead");
            let n: usize = tail[..digits].parse().expect("ASCII digits");
            let arg = n
                .checked_sub(1)
                .and_then(|i| args.get(i))
                .unwrap_or_else(|| panic!("${n} has no argument"));
            arg.write(&mut out);
            rest = &tail[digits..];
        }
        out.push_str(rest);
        FirstRead { sql: out }
    }

    /// The statement as it is sent.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

const OPEN: &str = "a handle holds its connection until it ends";

/// An open transaction on a pooled connection. Ours rather than sqlx's `Transaction`,
/// which cannot take a `BEGIN` that also returns rows. Dropped without commit or rollback
/// (an error path, a cancelled request), it rolls back on a task of its own; without a
/// runtime it closes the connection, and the server rolls back.
struct Inner {
    conn: Option<PoolConnection<Postgres>>,
    context: TxContext,
    extensions: http::Extensions,
    hooks: Arc<Vec<Arc<dyn CommitHook>>>,
}

impl Inner {
    fn conn(&mut self) -> &mut PgConnection {
        self.conn.as_deref_mut().expect(OPEN)
    }

    async fn commit(mut self) -> Result<(), Problem> {
        for hook in self.hooks.iter() {
            let parts = CommitParts {
                conn: self.conn.as_deref_mut().expect(OPEN),
                context: &self.context,
                extensions: &mut self.extensions,
            };
            hook.before_commit(parts).await?;
        }
        let mut conn = self.conn.take().expect(OPEN);
        if let Err(e) = sqlx::raw_sql("COMMIT").execute(&mut *conn).await {
            finish(conn, "ROLLBACK").await;
            return Err(e.into());
        }
        Ok(())
    }

    async fn rollback(mut self) -> Result<(), Problem> {
        let mut conn = self.conn.take().expect(OPEN);
        if let Err(e) = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await {
            conn.close_on_drop();
            return Err(e.into());
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(finish(conn, "ROLLBACK"))),
                Err(_) => drop(conn.detach()),
            }
        }
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
                self.0.conn()
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
                self.0.conn()
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
                self.0.rollback().await
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
        Ok(Self::begin_reading(db, tenant_id, actor, None).await?.0)
    }

    /// [`TenantTx::begin`] with `first` run in the same round trip, after the settings
    /// (the access decision); returns its rows (in text format).
    pub async fn begin_reading(
        db: &Db,
        tenant_id: TenantId,
        actor: Actor,
        first: Option<FirstRead>,
    ) -> Result<(TenantTx, Vec<PgRow>), Problem> {
        // UUIDs print as hex and dashes: safe to inline.
        let user = actor.user_id().map(|u| u.to_string()).unwrap_or_default();
        let settings = format!(
            "SET LOCAL balance.tenant_id = '{tenant_id}'; SET LOCAL balance.user_id = '{user}'"
        );
        let context = TxContext::new(Scope::Tenant(tenant_id), actor);
        let (inner, rows) = db.begin(&settings, first, context).await?;
        Ok((TenantTx(inner), rows))
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
        Ok(Self::begin_reading(db, user_id, None).await?.0)
    }

    /// [`UserTx::begin`] with `first` run in the same round trip, after the setting (the
    /// session check); returns its rows (in text format).
    pub async fn begin_reading(
        db: &Db,
        user_id: UserId,
        first: Option<FirstRead>,
    ) -> Result<(UserTx, Vec<PgRow>), Problem> {
        let settings = format!("SET LOCAL balance.user_id = '{user_id}'");
        let context = TxContext::new(Scope::User(user_id), Actor::User(user_id));
        let (inner, rows) = db.begin(&settings, first, context).await?;
        Ok((UserTx(inner), rows))
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
            db.begin("", None, TxContext::new(Scope::System, actor))
                .await?
                .0,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_read_inlines_each_parameter_once_and_only_as_hex() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let read = FirstRead::new(
            "SELECT $1, $2, $1 WHERE x = ANY($3) AND y = ANY($4)",
            &[
                Literal::Uuid(a),
                Literal::Uuid(b),
                Literal::ByteaArray(&[vec![0xde, 0xad], vec![0x01]]),
                Literal::ByteaArray(&[]),
            ],
        );
        assert_eq!(
            read.sql(),
            format!(
                "SELECT '{a}'::uuid, '{b}'::uuid, '{a}'::uuid WHERE x = ANY(ARRAY[decode('dead','hex'),decode('01','hex')]::bytea[]) AND y = ANY(ARRAY[]::bytea[])"
            )
        );
        // Ten or more parameters: `$10` is not `$1` followed by `0`.
        let ids: Vec<Literal> = (0..10).map(|_| Literal::Uuid(Uuid::now_v7())).collect();
        let read = FirstRead::new("SELECT $10, $1", &ids);
        let Literal::Uuid(tenth) = ids[9] else {
            unreachable!()
        };
        assert!(read.sql().starts_with(&format!("SELECT '{tenth}'::uuid, ")));
    }

    #[test]
    #[should_panic(expected = "$3 has no argument")]
    fn a_parameter_without_an_argument_is_a_programming_error() {
        FirstRead::new("SELECT $1, $3", &[Literal::Uuid(Uuid::now_v7())]);
    }

    #[test]
    #[should_panic(expected = "no parameter")]
    fn a_dollar_that_is_no_parameter_is_refused() {
        FirstRead::new("SELECT $$text$$", &[]);
    }
}
