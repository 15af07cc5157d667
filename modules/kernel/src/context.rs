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
    /// Who the credentials named, once they checked out (`user:<id>`, `api_key:<id>`), for
    /// the request's log line.
    actor: std::sync::OnceLock<String>,
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
            actor: std::sync::OnceLock::new(),
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

    /// Notes, in the current context (if any), who the request's credentials named. The
    /// first note wins.
    pub fn note_actor(actor: impl FnOnce() -> String) {
        if let Some(current) = Self::current() {
            let _ = current.actor.get_or_init(actor);
        }
    }

    /// Who the request's credentials named, if they checked out.
    pub fn actor(&self) -> Option<&str> {
        self.actor.get().map(String::as_str)
    }
}

/// The address limits count a client by: IPv4 as is (and IPv4-mapped IPv6 as IPv4), IPv6 by
/// its /64, which one host usually holds whole (rotating addresses inside it is free).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod client_key_tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix_and_mapped_v4_as_v4() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_eq!(key("10.0.0.1").to_string(), "10.0.0.1");
    }
}
