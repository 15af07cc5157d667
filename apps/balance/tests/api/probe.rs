//! The black-box probe of issue 31, kept: its slow-client, limit and NUL cases replayed
//! against the release-shaped `balance serve` binary (a process of its own, over real
//! sockets), so a regression in any of them fails the suite.

use std::time::Duration;

use serde_json::json;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::{
    cli::{serve, signed_in},
    helpers::migrated_db,
    slow_clients::{closed_within, connect_from as from},
};

#[tokio::test]
async fn the_security_probe_finds_nothing() {
    let db = migrated_db().await;
    let (_child, base) = serve(&[
        ("BALANCE_DATABASE_URL", db.runtime_url.clone()),
        ("BALANCE_HTTP_HEADER_TIMEOUT", "1s".into()),
        ("BALANCE_HTTP_BODY_TIMEOUT", "1s".into()),
        ("BALANCE_HTTP_MAX_CONNECTIONS_PER_IP", "4".into()),
        ("BALANCE_RATE_LIMITS", "user=8/min".into()),
    ])
    .await;
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();

    // F1: half-sent heads and stalled bodies are cut off; one address cannot hold them all.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut partial, Duration::from_secs(5))
            .await
            .is_some(),
        "an incomplete head is closed"
    );
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\"")
        .await
        .unwrap();
    let answer = closed_within(&mut stalled, Duration::from_secs(5))
        .await
        .expect("a stalled body is answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = from([127, 0, 3, 1], addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut one_more = from([127, 0, 3, 1], addr).await;
    let answer = closed_within(&mut one_more, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let client = reqwest::Client::new();
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "others are still served");
    drop(held);

    // F3: the per-user limit holds.
    let token = signed_in(&client, &base, "probe@example.com").await;
    let tenant: serde_json::Value = client
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({"name": "Probe"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = tenant["id"].as_str().unwrap();

    // F7: a NUL is refused, in a body and in a path.
    let nul_body = client
        .post(format!("{base}/api/v1/tenants/{t}/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "a\u{0}b", "roles": ["viewer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(nul_body.status(), 422);
    let nul_path = client
        .get(format!("{base}/api/v1/tenants/{t}/roles/a%00b"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(nul_path.status(), 422);

    let mut statuses = Vec::new();
    for _ in 0..8 {
        let me = client
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(me.status().as_u16());
        if me.status() == 429 {
            assert!(me.headers().contains_key("retry-after"));
            assert!(me.headers().contains_key("ratelimit-limit"));
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}
