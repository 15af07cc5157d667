//! The request being served, visible anywhere below the HTTP edge without threading it
//! through every signature: problem responses read the request id and path from here, and
//! database handles read the request id, client IP and user agent for the audit log.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

/// Facts about the unit of work being served that every layer may need.
#[derive(Debug, Default)]
pub struct RequestContext {
    /// The id echoed in `X-Request-Id`, carried by logs, spans and audit events.
    pub request_id: String,
    /// The request path, used as the problem's `instance`.
    pub path: String,
    /// The client's address, for the audit log.
    pub client_ip: Option<IpAddr>,
    /// The client's `User-Agent`, for the audit log.
    pub user_agent: Option<String>,
    /// The component acting: `balance` (the API), `worker`, `bot`, `cli`.
    pub source_agent: &'static str,
    /// The request sent an `Idempotency-Key` that is not visible ASCII. The router reads
    /// such a header as absent, which would silently run a retry twice; the key's parser
    /// refuses it instead, after the access decision like every other field.
    pub unreadable_idempotency_key: bool,
    replayed: AtomicBool,
}

impl RequestContext {
    /// The context of an HTTP request.
    pub fn http(
        request_id: String,
        path: String,
        client_ip: Option<IpAddr>,
        user_agent: Option<String>,
    ) -> Self {
        Self {
            request_id,
            path,
            client_ip,
            user_agent,
            source_agent: "balance",
            unreadable_idempotency_key: false,
            replayed: AtomicBool::new(false),
        }
    }

    /// The context of work that no HTTP request started (a job, the bot, the CLI).
    pub fn background(source_agent: &'static str, request_id: String) -> Self {
        Self {
            request_id,
            source_agent,
            ..Self::default()
        }
    }

    /// Runs `fut` with `self` as the current context.
    pub async fn scope<F: Future>(self: Arc<Self>, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// The context of the work being served, if any.
    pub fn current() -> Option<Arc<RequestContext>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// Marks the response as a replay of a stored one (`Idempotent-Replayed: true`).
    pub fn mark_replayed(&self) {
        self.replayed.store(true, Ordering::Relaxed);
    }

    /// Whether the response is a replay.
    pub fn is_replayed(&self) -> bool {
        self.replayed.load(Ordering::Relaxed)
    }
}
