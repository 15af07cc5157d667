//! Slow and idle clients over raw sockets (issue 31, F1): every connection that stops
//! sending is closed on a deadline, and no client address can hold every connection.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::helpers::TestApp;

const SHORT: &[(&str, &str)] = &[
    ("BALANCE_HTTP_HEADER_TIMEOUT", "1s"),
    ("BALANCE_HTTP_BODY_TIMEOUT", "1s"),
    ("BALANCE_HTTP_IDLE_TIMEOUT", "2s"),
];

/// Reads until the server closes the connection, at most `within`; what it sent, or `None`
/// when it was still open then.
pub(crate) async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&seen).into_owned())
}

pub(crate) async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

async fn closed_metric(app: &TestApp, reason: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let needle = format!("balance_http_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(SHORT).await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let sent = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(sent.as_deref(), Some(""), "closed without an answer");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(closed_metric(&app, "header_timeout").await, 1);
}

#[tokio::test]
async fn an_incomplete_or_trickled_head_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(SHORT).await;
    let mut partial = TcpStream::connect(app.addr).await.unwrap();
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut partial, Duration::from_secs(5))
            .await
            .is_some()
    );

    // One byte every 200 ms keeps bytes moving, but the head never completes in time.
    let mut trickle = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n";
    let mut closed = false;
    for byte in head {
        if trickle.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    if !closed {
        closed = closed_within(&mut trickle, Duration::from_millis(500))
            .await
            .is_some_and(|s| s.is_empty());
    }
    assert!(closed, "a trickled head is cut off");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(closed_metric(&app, "header_timeout").await, 2);
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_is_closed() {
    let app = TestApp::spawn_with(SHORT).await;
    let mut stalled = TcpStream::connect(app.addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"email\":",
        )
        .await
        .unwrap();
    let answer = closed_within(&mut stalled, Duration::from_secs(5))
        .await
        .expect("closed after the answer");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"));
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(SHORT).await;
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    // Longer than the header timeout: idle time between requests has its own deadline.
    let sent = closed_within(&mut kept, Duration::from_secs(6)).await;
    assert_eq!(sent.as_deref(), Some(""));
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(closed_metric(&app, "idle_timeout").await, 1);
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let app = TestApp::spawn_with(&[
        ("BALANCE_HTTP_MAX_CONNECTIONS", "6"),
        ("BALANCE_HTTP_MAX_CONNECTIONS_PER_IP", "3"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from([127, 0, 0, 2], app.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    // Let the server count them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = connect_from([127, 0, 0, 2], app.addr).await;
    let answer = closed_within(&mut fourth, Duration::from_secs(2))
        .await
        .expect("turned away at once");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("over_capacity"));

    // Another address is served.
    let mut other = connect_from([127, 0, 0, 3], app.addr).await;
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut other, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Past the total cap, everyone is turned away until connections close.
    for source in [4, 5] {
        let mut s = connect_from([127, 0, 0, source], app.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    let mut s = connect_from([127, 0, 0, 6], app.addr).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    held.push(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = connect_from([127, 0, 0, 7], app.addr).await;
    let answer = closed_within(&mut over, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(closed_metric(&app, "max_connections_per_ip").await, 1);
    assert_eq!(closed_metric(&app, "max_connections").await, 1);
}
