//! The request being served, visible anywhere below the HTTP edge without threading it
//! through every signature: problem responses read the request id and path from here.

use std::sync::Arc;

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

/// Facts about the request being served that every layer may need.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The id echoed in `X-Request-Id`, carried by logs, spans and audit events.
    pub request_id: String,
    /// The request path, used as the problem's `instance`.
    pub path: String,
}

impl RequestContext {
    /// Runs `fut` with `self` as the current request context.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(Arc::new(self), fut).await
    }

    /// The context of the request being served, if any.
    pub fn current() -> Option<Arc<RequestContext>> {
        CURRENT.try_with(Arc::clone).ok()
    }
}
