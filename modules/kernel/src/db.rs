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

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

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
    /// The accounts the transaction is confined to (DESIGN.md §8), when it is.
    pub account_scope: Option<Vec<uuid::Uuid>>,
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
            account_scope: None,
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
    hooks: Arc<Vec<Arc<dyn CommitHook>>>,
    warm: Warm,
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
            hooks: Arc::new(Vec::new()),
            warm: Warm {
                pool,
                idle: Arc::default(),
            },
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
    /// transaction. The read is a statement prepared on the connection (planned once, as
    /// sqlx's own statements are); on a connection that has not prepared it yet, the first
    /// attempt fails without effect and the second prepares it on the way. A failure rolls
    /// back before it returns.
    async fn begin(
        &self,
        settings: &str,
        first: Option<FirstRead>,
        context: TxContext,
    ) -> Result<(Inner, Vec<PgRow>), Problem> {
        let mut conn = self.warm.acquire().await?;
        let mut statement = String::from("BEGIN");
        if !settings.is_empty() {
            statement.push_str("; ");
            statement.push_str(settings);
        }
        if let Some(first) = &first {
            statement.push_str("; ");
            first.write_execute(&mut statement);
        }
        // Safe: the settings and the read's arguments are UUIDs and hex (`Literal`), the
        // prepared statement's text is the module's own.
        let mut result = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .fetch_all(&mut *conn)
            .await;
        if let (Err(e), Some(first)) = (&result, &first)
            && is_unprepared(e)
        {
            let retry = format!("ROLLBACK; {}; {statement}", first.statement.prepare());
            result = sqlx::raw_sql(sqlx::AssertSqlSafe(retry))
                .fetch_all(&mut *conn)
                .await;
        }
        let rows = match result {
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
            warm: self.warm.clone(),
        };
        Ok((inner, rows))
    }
}

/// How long a warm connection waits for the next transaction before it goes back to the pool.
const WARM_FOR: Duration = Duration::from_secs(1);

/// Connections whose last transaction ended cleanly, kept checked out of the pool for the
/// next transaction: sqlx tests every connection that comes back to its pool with a round
/// trip (and a task of its own), which a busy server would pay once per transaction. The
/// pool still bounds the connections (these count as in use). A warm connection idle for
/// longer than [`WARM_FOR`] goes back to the pool, which tests it; when the pool is at its
/// limit with none idle, a connection goes straight back, so that a caller queued in the
/// pool is served at once.
#[derive(Clone)]
struct Warm {
    pool: PgPool,
    /// Each with the time its last transaction ended; the last one ended most recently.
    idle: Arc<std::sync::Mutex<Vec<WarmConnection>>>,
}

type WarmConnection = (PoolConnection<Postgres>, Instant);

impl Warm {
    async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        loop {
            let popped = self.idle.lock().expect("warm connections").pop();
            match popped {
                Some((conn, since)) if since.elapsed() <= WARM_FOR => return Ok(conn),
                Some((stale, _)) => drop(stale),
                None => return self.pool.acquire().await,
            }
        }
    }

    fn release(&self, conn: PoolConnection<Postgres>) {
        let full = self.pool.size() >= self.pool.options().get_max_connections();
        if full && self.pool.num_idle() == 0 {
            return drop(conn);
        }
        let stale: Vec<WarmConnection> = {
            let mut idle = self.idle.lock().expect("warm connections");
            idle.push((conn, Instant::now()));
            // The oldest are first: those unused for too long go back (outside the lock).
            let old = idle.partition_point(|(_, since)| since.elapsed() > WARM_FOR);
            idle.drain(..old).collect()
        };
        drop(stale);
    }
}

/// `26000 invalid_sql_statement_name`: this connection has not prepared the statement.
fn is_unprepared(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "26000")
}

/// Ends an abandoned transaction: `ROLLBACK`, or the connection is closed (the server then
/// rolls back) when that fails.
async fn finish(mut conn: PoolConnection<Postgres>, statement: &'static str) {
    if sqlx::raw_sql(statement).execute(&mut *conn).await.is_err() {
        conn.close_on_drop();
    }
}

/// A statement of a module's store that can ride in the round trip of `BEGIN` (the access
/// decision, the session check): prepared on each connection under a name derived from
/// its text, so two statements never share a name and an edited one is a new statement.
/// Declare it as a `static` (`static READ: Statement = Statement::new(include_str!(…))`).
#[derive(Debug)]
pub struct Statement {
    sql: &'static str,
    /// The name and the number of parameters, from the text.
    prepared: std::sync::OnceLock<(String, usize)>,
}

impl Statement {
    pub const fn new(sql: &'static str) -> Statement {
        Statement {
            sql,
            prepared: std::sync::OnceLock::new(),
        }
    }

    /// The text, as sqlx's macros check it.
    pub fn sql(&self) -> &'static str {
        self.sql
    }

    fn prepared(&self) -> &(String, usize) {
        self.prepared.get_or_init(|| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(self.sql.as_bytes());
            let name = format!("balance_{}", crate::hex::encode(&digest[..8]));
            (name, parameters(self.sql))
        })
    }

    /// `PREPARE <name> AS <text>`.
    fn prepare(&self) -> String {
        format!("PREPARE {} AS {}", self.prepared().0, self.sql)
    }
}

/// The highest `$n` in `sql`.
fn parameters(sql: &str) -> usize {
    let mut max = 0;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        let tail = &rest[at + 1..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = tail[..digits].parse::<usize>() {
            max = max.max(n);
        }
        rest = &tail[digits..];
    }
    max
}

/// A [`Statement`] with its arguments, to run first in a transaction (`begin_reading`).
/// The arguments travel as literals in `EXECUTE`, because a simple query takes no
/// parameters: only values that print as hex digits and dashes can be arguments, so no
/// argument can change the statement.
#[derive(Debug, Clone)]
pub struct FirstRead {
    statement: &'static Statement,
    args: String,
}

/// An argument of a [`FirstRead`].
#[derive(Debug, Clone, Copy)]
pub enum Literal<'a> {
    Uuid(Uuid),
    /// An `int4`/`int8`: digits and a sign.
    Int(i64),
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
            Literal::Int(n) => {
                let _ = write!(out, "{n}");
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
    /// `statement` with `args` for `$1`…`$n`. A count that does not match the statement's
    /// parameters panics: a programming error that the statement's first test finds.
    pub fn new(statement: &'static Statement, args: &[Literal<'_>]) -> FirstRead {
        let wanted = statement.prepared().1;
        assert_eq!(
            args.len(),
            wanted,
            "the statement takes {wanted} argument(s), not {}",
            args.len()
        );
        let mut rendered = String::with_capacity(args.len() * 48);
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                rendered.push_str(", ");
            }
            arg.write(&mut rendered);
        }
        FirstRead {
            statement,
            args: rendered,
        }
    }

    /// `EXECUTE <name>(<args>)`, as it is sent.
    fn write_execute(&self, out: &mut String) {
        out.push_str("EXECUTE ");
        out.push_str(&self.statement.prepared().0);
        if !self.args.is_empty() {
            out.push('(');
            out.push_str(&self.args);
            out.push(')');
        }
    }

    /// The `EXECUTE` as it is sent.
    pub fn execute(&self) -> String {
        let mut out = String::new();
        self.write_execute(&mut out);
        out
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
    warm: Warm,
}

impl Inner {
    fn conn(&mut self) -> &mut PgConnection {
        self.conn.as_deref_mut().expect(OPEN)
    }

    async fn commit(self) -> Result<(), Problem> {
        self.end("COMMIT").await
    }

    /// Runs the commit hooks, then `statement` (a `COMMIT`, maybe with a setting first).
    async fn end(mut self, statement: &'static str) -> Result<(), Problem> {
        for hook in self.hooks.iter() {
            let parts = CommitParts {
                conn: self.conn.as_deref_mut().expect(OPEN),
                context: &self.context,
                extensions: &mut self.extensions,
            };
            hook.before_commit(parts).await?;
        }
        let mut conn = self.conn.take().expect(OPEN);
        if let Err(e) = sqlx::raw_sql(statement).execute(&mut *conn).await {
            finish(conn, "ROLLBACK").await;
            return Err(e.into());
        }
        self.warm.release(conn);
        Ok(())
    }

    async fn rollback(mut self) -> Result<(), Problem> {
        let mut conn = self.conn.take().expect(OPEN);
        if let Err(e) = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await {
            conn.close_on_drop();
            return Err(e.into());
        }
        self.warm.release(conn);
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

            /// Commits without waiting for the commit to reach the disk (`synchronous_commit`
            /// off for this transaction): for bookkeeping that a database crash may lose
            /// harmlessly, such as a job marked running. A later durable commit makes it
            /// durable too (the log is written in order). Same round trips as `commit`.
            pub async fn commit_unflushed(self) -> Result<(), Problem> {
                self.0
                    .end("SET LOCAL synchronous_commit TO off; COMMIT")
                    .await
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

    /// Names the agent acting in this transaction for the audit log (`billing` for the
    /// changes a Stripe webhook drives, say); `balance` unless set.
    pub fn act_for(&mut self, agent: &'static str) {
        self.0.context.source_agent = agent;
    }

    /// Confines the transaction to these accounts of its tenant (DESIGN.md §8): the
    /// account-owned tables' restrictive policies read `balance.account_ids`. An empty list
    /// confines it to none. Set by the access decision for a member or key with a scope.
    pub async fn scope_accounts(&mut self, accounts: &[Uuid]) -> Result<(), Problem> {
        let list = if accounts.is_empty() {
            Uuid::nil().to_string()
        } else {
            accounts
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        // UUIDs print as hex and dashes: safe to inline.
        let statement = format!("SET LOCAL balance.account_ids = '{list}'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(self.conn())
            .await?;
        self.0.context.account_scope = Some(accounts.to_vec());
        Ok(())
    }

    /// Begins another transaction for the caller of an earlier one (its context, kept when
    /// it ended): the same tenant, actor and account scope. For work that must not hold a
    /// transaction across a call to the outside world (a bank provider): keep the context,
    /// end the transaction, call, then continue in the next.
    pub async fn resume(db: &Db, context: &TxContext) -> Result<TenantTx, Problem> {
        let Scope::Tenant(tenant) = context.scope else {
            return Err(Problem::internal());
        };
        let mut next = TenantTx::begin(db, tenant, context.actor).await?;
        if let Some(accounts) = &context.account_scope {
            next.scope_accounts(accounts).await?;
        }
        Ok(next)
    }

    /// Whether the transaction is confined to some accounts.
    pub fn is_account_scoped(&self) -> bool {
        self.0.context.account_scope.is_some()
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
        Ok(Self::begin_reading(db, actor, None).await?.0)
    }

    /// [`SystemTx::begin`] with `first` run in the same round trip; returns its rows (in
    /// text format).
    pub async fn begin_reading(
        db: &Db,
        actor: Actor,
        first: Option<FirstRead>,
    ) -> Result<(SystemTx, Vec<PgRow>), Problem> {
        let context = TxContext::new(Scope::System, actor);
        let (inner, rows) = db.begin("", first, context).await?;
        Ok((SystemTx(inner), rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static READ: Statement = Statement::new("SELECT $2, $1 WHERE x = ANY($3) AND $10 IS NULL");
    static PLAIN: Statement = Statement::new("SELECT 1");

    #[test]
    fn a_first_read_executes_its_statement_with_literal_arguments() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let hashes = [vec![0xde, 0xad], vec![0x01]];
        let mut args = vec![
            Literal::Uuid(a),
            Literal::Uuid(b),
            Literal::ByteaArray(&hashes),
        ];
        args.extend((0..6).map(|_| Literal::ByteaArray(&[])));
        args.push(Literal::Uuid(a));
        let read = FirstRead::new(&READ, &args);
        let name = &READ.prepared().0;
        assert!(name.starts_with("balance_") && name.len() == 24, "{name}");
        assert_eq!(
            read.execute(),
            format!(
                "EXECUTE {name}('{a}'::uuid, '{b}'::uuid, ARRAY[decode('dead','hex'),decode('01','hex')]::bytea[], {}'{a}'::uuid)",
                "ARRAY[]::bytea[], ".repeat(6)
            )
        );
        assert_eq!(READ.prepare(), format!("PREPARE {name} AS {}", READ.sql()));
        assert_eq!(
            FirstRead::new(&PLAIN, &[]).execute(),
            format!("EXECUTE {}", PLAIN.prepared().0)
        );
        assert_ne!(PLAIN.prepared().0, *name, "names come from the text");
    }

    #[test]
    #[should_panic(expected = "takes 10 argument(s), not 1")]
    fn a_wrong_number_of_arguments_is_a_programming_error() {
        FirstRead::new(&READ, &[Literal::Uuid(Uuid::now_v7())]);
    }
}
