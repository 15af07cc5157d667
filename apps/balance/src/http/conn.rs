//! The connection layer under the edge: it accepts TCP connections, caps how many are open
//! (in all and per client address), serves HTTP/1.1 on each with hyper, and closes those
//! that send too slowly or sit idle.
//!
//! Each connection is in one of three phases, and each phase has its deadline:
//! - waiting for a request head (a new connection, or the first byte of the next request on
//!   a kept-alive one): the whole head must arrive within the header timeout, so a client
//!   trickling one byte at a time cannot hold the connection;
//! - idle between requests (kept alive): closed after the idle timeout;
//! - serving a request: closed when no byte moves either way for the idle timeout (a client
//!   that stops reading its answer). The body has its own deadline in the edge (`408`).
//!
//! poem's own server has only an inactivity timeout, which a trickle resets; hence this.
//! HTTP/2 is not served: every deployment terminates TLS (and HTTP/2) at a proxy, and
//! prior-knowledge h2c would sidestep these phases.

use std::{
    collections::HashMap,
    convert::Infallible,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use poem::{
    Addr, Endpoint, Response,
    endpoint::BoxEndpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
    time::Instant,
};

use crate::{config::ConnLimits, metrics::Metrics};

/// How long in-flight requests may finish after a stop.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `stop` turns true, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    app: BoxEndpoint<'static, Response>,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let app: Arc<BoxEndpoint<'static, Response>> = Arc::new(app);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let reporter = Arc::new(Reporter::new(metrics));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    reporter.refused("accept_failed", None, Some(&err));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            reporter.refused("max_connections", Some(peer.ip()), None);
            turn_away(stream);
            continue;
        };
        let Some(slot) = per_ip.take(peer.ip(), limits.max_per_ip) else {
            reporter.refused("max_connections_per_ip", Some(peer.ip()), None);
            turn_away(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            local: local.clone(),
            peer,
            limits: limits.clone(),
            reporter: reporter.clone(),
            _permit: permit,
            _slot: slot,
        };
        connections.spawn(conn.run(stream, stop.clone()));
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the drain period; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Over capacity: a `503` written in one go (the send buffer of a new socket is empty), then
/// the connection is closed without waiting for anything.
fn turn_away(stream: tokio::net::TcpStream) {
    const BODY: &str = r#"{"type":"urn:balance:problem:over_capacity","title":"Server busy","status":503,"detail":"Too many open connections; try again shortly.","code":"over_capacity"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Open connections per client address (IPv6 by its /64, which one host usually holds).
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

struct Slot {
    map: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let key = kernel::client_key(ip);
        let mut map = self.0.lock().expect("per-ip lock");
        let count = map.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            map: self.clone(),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().expect("per-ip lock");
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Counts closed and refused connections by reason, and logs them: at most one line per
/// reason every 10 s, with how many happened since the last one (a flood of slow clients
/// must not flood the log too).
struct Reporter {
    metrics: Arc<Metrics>,
    last: Mutex<HashMap<&'static str, (std::time::Instant, u64)>>,
}

impl Reporter {
    fn new(metrics: Arc<Metrics>) -> Reporter {
        Reporter {
            metrics,
            last: Mutex::new(HashMap::new()),
        }
    }

    fn refused(&self, reason: &'static str, ip: Option<IpAddr>, err: Option<&io::Error>) {
        self.report(reason, ip, err, "connection refused");
    }

    fn closed(&self, reason: &'static str, ip: IpAddr) {
        self.report(reason, Some(ip), None, "connection closed");
    }

    fn report(
        &self,
        reason: &'static str,
        ip: Option<IpAddr>,
        err: Option<&io::Error>,
        what: &'static str,
    ) {
        self.metrics.connection_closed(reason);
        let now = std::time::Instant::now();
        let mut last = self.last.lock().expect("reporter lock");
        let entry = last
            .entry(reason)
            .or_insert((now - Duration::from_secs(3600), 0));
        entry.1 += 1;
        if now.duration_since(entry.0) >= Duration::from_secs(10) {
            let count = std::mem::take(&mut entry.1);
            entry.0 = now;
            drop(last);
            let ip = ip.map(|ip| ip.to_string());
            let error = err.map(|e| e.to_string());
            tracing::warn!(
                target: "balance::http",
                reason,
                client_ip = ip.as_deref(),
                error = error.as_deref(),
                count_since_last_line = count,
                "{what}"
            );
        }
    }
}

/// What a connection is doing, shared by its reader, its responses and its watchdog.
struct Phase {
    started: Instant,
    state: AtomicU8,
    /// Milliseconds since `started` when the state was entered.
    since: AtomicU64,
    /// Milliseconds since `started` when a byte last moved.
    last_io: AtomicU64,
}

const HEAD: u8 = 0;
const IDLE: u8 = 1;
const SERVING: u8 = 2;

impl Phase {
    fn new() -> Phase {
        Phase {
            started: Instant::now(),
            state: AtomicU8::new(HEAD),
            since: AtomicU64::new(0),
            last_io: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn enter(&self, state: u8) {
        let now = self.now();
        self.since.store(now, Ordering::Relaxed);
        self.last_io.store(now, Ordering::Relaxed);
        self.state.store(state, Ordering::Release);
    }

    fn moved(&self, read: bool) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        // The first byte of the next request starts its head deadline.
        if read
            && self
                .state
                .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.since.store(now, Ordering::Relaxed);
        }
    }

    /// When the current phase runs out, and the reason it would be closed for.
    fn deadline(&self, limits: &ConnLimits) -> (Instant, &'static str) {
        let ms = |v: &AtomicU64| Duration::from_millis(v.load(Ordering::Relaxed));
        match self.state.load(Ordering::Acquire) {
            HEAD => (
                self.started + ms(&self.since) + limits.header_timeout,
                "header_timeout",
            ),
            IDLE => (
                self.started + ms(&self.since) + limits.idle_timeout,
                "idle_timeout",
            ),
            _ => (
                self.started + ms(&self.last_io) + limits.idle_timeout,
                "stalled",
            ),
        }
    }
}

struct Connection {
    app: Arc<BoxEndpoint<'static, Response>>,
    local: LocalAddr,
    peer: SocketAddr,
    limits: ConnLimits,
    reporter: Arc<Reporter>,
    _permit: OwnedSemaphorePermit,
    _slot: Slot,
}

impl Connection {
    async fn run(self, stream: tokio::net::TcpStream, mut stop: watch::Receiver<bool>) {
        let phase = Arc::new(Phase::new());
        let remote = RemoteAddr(Addr::SocketAddr(self.peer));
        let (app, local) = (self.app.clone(), self.local.clone());
        let service = hyper::service::service_fn({
            let phase = phase.clone();
            move |req: http::Request<Incoming>| {
                let (app, phase) = (app.clone(), phase.clone());
                let (local, remote) = (local.clone(), remote.clone());
                async move {
                    phase.enter(SERVING);
                    let request = poem::Request::from((req, local, remote, Scheme::HTTP));
                    let response: hyper::Response<BoxBody<Bytes, io::Error>> =
                        app.get_response(request).await.into();
                    Ok::<_, Infallible>(response.map(|inner| Tracked {
                        inner,
                        phase: phase.clone(),
                    }))
                }
            }
        });
        let io = TokioIo::new(Watched {
            inner: stream,
            phase: phase.clone(),
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            let (deadline, reason) = phase.deadline(&self.limits);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    // The phase may have moved on while the timer ran.
                    let (now_deadline, _) = phase.deadline(&self.limits);
                    if now_deadline <= Instant::now() {
                        if !stopping {
                            self.reporter.closed(reason, self.peer.ip());
                        }
                        return;
                    }
                }
                _ = stopped(&mut stop), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The socket, noting every byte that moves.
struct Watched {
    inner: tokio::net::TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.moved(true);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.phase.moved(false);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.phase.moved(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that marks the connection idle once hyper has written (and dropped) it.
struct Tracked {
    inner: BoxBody<Bytes, io::Error>,
    phase: Arc<Phase>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.phase.enter(IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_given_back() {
        let map = Arc::new(PerIp::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let one = map.take(ip, 2).unwrap();
        let _two = map.take(ip, 2).unwrap();
        assert!(map.take(ip, 2).is_none());
        drop(one);
        assert!(map.take(ip, 2).is_some());
    }
}
