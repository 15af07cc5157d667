//! The HTTP server: the API (poem-openapi) under `/api/v1`, the operations endpoints at the
//! root, and the edge every request passes through (request id, body limit, problems,
//! security headers, one log line, metrics, a span).

mod conn;
mod edge;
mod ops;
mod spec_rules;

use std::{net::SocketAddr, sync::Arc};

use poem::{
    Endpoint, EndpointExt, IntoEndpoint, Request, Response, Route,
    endpoint::BoxEndpoint,
    get,
    middleware::{CatchPanic, Cors},
};
use poem_openapi::{OpenApi, OpenApiService};
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    config::{ConnLimits, HttpConfig},
    metrics::Metrics,
};

pub use edge::body_limit_for;

/// The product's APIs: each module adds its `Api` here as it lands.
pub type ProductApi = (
    identity::IdentityApi,
    tenancy::TenancyApi,
    access::AccessApi,
    access::RolesApi,
    audit::AuditApi,
    audit::TenantEventsApi,
    jobs::TenantJobsApi,
    ledger::LedgerApi,
    imports::ImportsApi,
    categorize::CategorizeApi,
    banking::BankingApi,
    billing::BillingApi,
    fx::FxApi,
    budgets::BudgetsApi,
);

/// The permission of every tenant operation, by operation id: the modules declare them beside
/// their routes; the spec carries them as `x-permission`.
pub fn permissions() -> impl Iterator<Item = (&'static str, &'static str)> {
    tenancy::PERMISSIONS
        .iter()
        .chain(access::PERMISSIONS)
        .chain(audit::PERMISSIONS)
        .chain(jobs::PERMISSIONS)
        .chain(ledger::PERMISSIONS)
        .chain(imports::PERMISSIONS)
        .chain(categorize::PERMISSIONS)
        .chain(banking::PERMISSIONS)
        .chain(billing::PERMISSIONS)
        .chain(budgets::PERMISSIONS)
        .copied()
}

/// The product's APIs, built on the platform's services.
pub fn product_api(platform: &crate::Platform) -> ProductApi {
    (
        identity::IdentityApi::new(platform.identity.clone()),
        tenancy::TenancyApi::new(
            platform.db.clone(),
            platform.identity.clone(),
            platform.authz.clone(),
            platform.tenancy.clone(),
            platform.cursors.clone(),
        ),
        access::AccessApi::new(platform.identity.clone(), platform.policy.builtin().clone()),
        access::RolesApi::new(platform.authz.clone(), platform.roles.clone()),
        audit::AuditApi::new(&platform.audit),
        audit::TenantEventsApi::new(
            platform.authz.clone(),
            &platform.audit,
            platform.cursors.clone(),
        ),
        jobs::TenantJobsApi::new(platform.authz.clone()),
        ledger::LedgerApi::new(
            platform.authz.clone(),
            platform.ledger.clone(),
            platform.cursors.clone(),
        ),
        imports::ImportsApi::new(
            platform.authz.clone(),
            platform.imports.clone(),
            platform.cursors.clone(),
        ),
        categorize::CategorizeApi::new(
            platform.authz.clone(),
            platform.categorizer.clone(),
            platform.cursors.clone(),
        ),
        banking::BankingApi::new(
            platform.authz.clone(),
            platform.banking.clone(),
            platform.cursors.clone(),
        ),
        billing::BillingApi::new(platform.authz.clone(), platform.billing.clone()),
        fx::FxApi::new(platform.db.clone(), platform.fx.clone()),
        budgets::BudgetsApi::new(
            platform.authz.clone(),
            platform.budgets.clone(),
            platform.cursors.clone(),
        ),
    )
}

/// The OpenAPI service of `api`.
fn service<A: OpenApi>(api: A) -> OpenApiService<A, ()> {
    OpenApiService::new(api, "Balance", env!("CARGO_PKG_VERSION"))
        .description("Multi-tenant money operations: bank connections, transactions, imports, categorization, budgets and alerts.")
}

/// The spec of `api`, as served at `/openapi.json` and committed in `openapi/openapi.json`.
///
/// The spec never depends on configuration. Post-processing (e.g. `x-permission` from the
/// permission registry) happens here, so the served and the committed spec agree.
pub fn spec_of<A: OpenApi>(api: A) -> String {
    let value = post_process(
        serde_json::from_str(&service(api).spec()).expect("poem-openapi writes valid JSON"),
    );
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value serialises");
    text.push('\n');
    text
}

/// Adds what poem-openapi cannot emit: each tenant operation's `x-permission`, and the spec's
/// rules of [`spec_rules`] (nullable fields, request rules).
fn post_process(mut spec: serde_json::Value) -> serde_json::Value {
    let permissions: std::collections::HashMap<_, _> = permissions().collect();
    if let Some(paths) = spec["paths"].as_object_mut() {
        for item in paths.values_mut() {
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|ops| ops.values_mut())
            {
                let Some(id) = op["operationId"].as_str() else {
                    continue;
                };
                if let Some(permission) = permissions.get(id) {
                    op["x-permission"] = serde_json::Value::String(permission.to_string());
                }
            }
        }
    }
    spec_rules::apply(&mut spec);
    spec
}

/// The production spec (`balance openapi`). The spec depends on types only, never on
/// configuration: the APIs are built here on a development configuration and a pool that
/// never connects.
pub fn spec() -> String {
    let dir = std::env::temp_dir().join(format!("balance-spec-{}", std::process::id()));
    let vars = [("BALANCE_DATA_DIR", dir.to_string_lossy().to_string())];
    let mut config = crate::Config::load(&|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("defaults load");
    config.argon2 = identity::Argon2Params::TEST;
    // A lazy pool still wants a runtime to exist (it never runs anything on it here).
    let runtime = tokio::runtime::Handle::try_current().is_err().then(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    let _entered = runtime.as_ref().map(|r| r.enter());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://spec@127.0.0.1:1/spec")
        .expect("a lazy pool never connects");
    let platform = crate::Platform::new(&config, pool).expect("a development platform builds");
    let spec = spec_of(product_api(&platform));
    drop(platform);
    let _ = std::fs::remove_dir_all(&dir);
    spec
}

/// Shared by the handlers of the operations endpoints.
pub(crate) struct AppState {
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
    pub spec: String,
    pub docs: ops::DocsPage,
    pub metrics_on_main: bool,
    /// The platform's queues: `/metrics` reports each, even when empty.
    pub queues: Vec<&'static str>,
}

/// A running HTTP server.
pub struct Server {
    /// Where the API listens (port 0 in the config becomes the real port here).
    pub addr: SocketAddr,
    /// Where `/metrics` listens when `BALANCE_ADMIN_LISTEN` is set.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts serving the product API.
    pub async fn start_product(
        config: &HttpConfig,
        platform: &crate::Platform,
    ) -> anyhow::Result<Server> {
        platform.listen_policy();
        let mut config = config.clone();
        config.conn.max_connections = fit_to_open_files(config.conn.max_connections);
        Self::start(&config, platform.pool.clone(), product_api(platform)).await
    }

    /// Starts serving `api` (the product API, plus test-only routes in tests).
    pub async fn start<A: OpenApi + 'static>(
        config: &HttpConfig,
        pool: PgPool,
        api: A,
    ) -> anyhow::Result<Server> {
        let metrics = Arc::new(Metrics::new());
        let service = service(api);
        let docs = ops::DocsPage::new(&service.scalar_html());
        let spec = post_process(serde_json::from_str(&service.spec())?);
        let routes = Arc::new(routes_by_operation(&spec));
        let allowed = Arc::new(edge::Allowed::from_spec(&spec));
        let state = Arc::new(AppState {
            pool,
            metrics: metrics.clone(),
            spec: serde_json::to_string_pretty(&spec)?,
            docs,
            metrics_on_main: config.admin_listen.is_none(),
            queues: jobs::default_queues().iter().map(|q| q.name).collect(),
        });

        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let app = edge::wrap(
            api_and_ops(service.into_endpoint(), state.clone()),
            config,
            metrics.clone(),
            routes.clone(),
            allowed.clone(),
        );
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        tasks.push(tokio::spawn(conn::serve(
            listener,
            app.boxed(),
            config.conn.clone(),
            metrics.clone(),
            rx.clone(),
        )));

        let mut admin_addr = None;
        if let Some(admin) = config.admin_listen {
            let admin_app = edge::wrap(
                Route::new().at("/metrics", get(ops::metrics).data(state.clone())),
                config,
                metrics.clone(),
                routes.clone(),
                allowed.clone(),
            );
            let listener = TcpListener::bind(admin).await?;
            admin_addr = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(conn::serve(
                listener,
                admin_app.boxed(),
                config.conn.clone(),
                metrics.clone(),
                rx.clone(),
            )));
        }
        Ok(Server {
            addr,
            admin_addr,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting connections, lets in-flight requests finish (up to 30 s), and returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Resolves when every listener has stopped (after [`Server::stop`] or an error).
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// A connection cap above the process's open-file limit would never be reached: the
/// accept loop would run out of descriptors first, and the pool, mail and logs with it. The
/// cap is lowered to leave 256 descriptors for those, and the log says so.
fn fit_to_open_files(max_connections: usize) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
    match soft {
        Some(soft) if soft < max_connections + 256 => {
            let fitted = soft.saturating_sub(256).max(64);
            tracing::warn!(
                open_file_limit = soft,
                configured = max_connections,
                max_connections = fitted,
                "the open-file limit is below BALANCE_HTTP_MAX_CONNECTIONS + 256: connections are capped lower; raise the limit (ulimit -n, LimitNOFILE=) to serve more"
            );
            fitted
        }
        _ => max_connections,
    }
}

/// Each operation id's path template, read from the spec.
fn routes_by_operation(spec: &serde_json::Value) -> edge::Routes {
    let mut routes = edge::Routes::new();
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for op in item.as_object().into_iter().flat_map(|ops| ops.values()) {
            if let Some(id) = op["operationId"].as_str() {
                routes.insert(id.to_string(), path.clone());
            }
        }
    }
    routes
}

/// `/metrics` of a worker process (its run-duration histograms) on `addr`.
pub async fn serve_worker_metrics(
    addr: SocketAddr,
    metrics: Arc<jobs::WorkerMetrics>,
) -> anyhow::Result<Server> {
    let app = Route::new().at(
        "/metrics",
        get(poem::endpoint::make_sync(move |_| {
            Response::builder()
                .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                .body(metrics.render())
        })),
    );
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(conn::serve(
        listener,
        app.map_to_response().boxed(),
        ConnLimits::default(),
        Arc::new(Metrics::new()),
        rx,
    ));
    Ok(Server {
        addr,
        admin_addr: None,
        shutdown,
        tasks: vec![task],
    })
}

/// `/api/...` goes to the API; everything else to the operations routes. Two separate
/// routers keep each route template exactly as declared (poem's nesting would prefix it).
fn api_and_ops(
    api: impl Endpoint<Output = Response> + 'static,
    state: Arc<AppState>,
) -> impl Endpoint<Output = Response> {
    let mut ops = Route::new()
        .at("/health", get(ops::health))
        .at("/ready", get(ops::ready))
        .at("/openapi.json", get(ops::openapi_json))
        .at("/docs", get(ops::docs));
    if state.metrics_on_main {
        ops = ops.at("/metrics", get(ops::metrics));
    }
    Dispatch {
        api: api.boxed(),
        ops: ops.data(state).map_to_response().boxed(),
    }
    .with(CatchPanic::new().with_handler(edge::panic_response))
}

struct Dispatch {
    api: BoxEndpoint<'static, Response>,
    ops: BoxEndpoint<'static, Response>,
}

impl Endpoint for Dispatch {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path();
        if path == "/api" || path.starts_with("/api/") {
            self.api.call(req).await
        } else {
            self.ops.call(req).await
        }
    }
}

/// CORS for the configured origins only; none configured means no CORS headers at all.
pub(crate) fn cors(config: &HttpConfig) -> Option<Cors> {
    if config.cors_origins.is_empty() {
        return None;
    }
    Some(
        Cors::new()
            .allow_origins(config.cors_origins.iter().map(String::as_str))
            .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
            .allow_headers([
                "authorization",
                "content-type",
                "idempotency-key",
                "if-match",
                "x-request-id",
            ])
            .expose_headers([
                "x-request-id",
                "retry-after",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
                "location",
                "etag",
            ])
            .max_age(600),
    )
}
