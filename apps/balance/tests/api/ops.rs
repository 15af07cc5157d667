//! The operations endpoints at the root: health, readiness, metrics, spec and docs.

use std::time::{Duration, Instant};

use testkit::{cluster::Cluster, db::TestDb, eventually};

use crate::helpers::{TestApp, assert_problem, migrated_db, parts};

#[tokio::test]
async fn health_answers_while_the_process_lives() {
    let app = TestApp::spawn().await;
    let (status, _, body) = parts(app.get("/health").await).await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ok"))
    );
}

#[tokio::test]
async fn ready_is_200_on_a_migrated_database() {
    let app = TestApp::spawn().await;
    let (status, _, body) = parts(app.get("/ready").await).await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ready"))
    );
}

#[tokio::test]
async fn ready_is_503_with_the_reason_while_migrations_are_missing() {
    let app = TestApp::start(TestDb::empty().await.unwrap(), &[]).await;
    let body = assert_problem(app.get("/ready").await, 503, "not_ready").await;
    assert!(
        body["detail"].as_str().unwrap().contains("balance migrate"),
        "{body}"
    );
    // Health does not depend on the database.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn ready_recovers_by_itself_after_a_postgresql_restart() {
    let cluster = Cluster::start("ready").expect("a cluster of its own");
    kernel::migrate::migrate(&cluster.owner_url, &cluster.runtime_url)
        .await
        .unwrap();
    let db = TestDb::empty().await.unwrap();
    let runtime_url = cluster.runtime_url.clone();
    // The app talks to the private cluster; `db` only satisfies the helper.
    let app = TestApp::start(db, &[("BALANCE_DATABASE_URL", &runtime_url)]).await;
    assert_eq!(app.get("/ready").await.status(), 200);

    cluster.stop().unwrap();
    let down = eventually(Duration::from_secs(30), || async {
        let resp = app.get("/ready").await;
        (resp.status() == 503).then_some(resp)
    })
    .await
    .expect("ready turns 503 while the database is down");
    let body = assert_problem(down, 503, "not_ready").await;
    assert!(
        body["detail"].as_str().unwrap().contains("database"),
        "{body}"
    );

    cluster.resume().unwrap();
    let back = Instant::now();
    let ok = eventually(Duration::from_secs(20), || async {
        (app.get("/ready").await.status() == 200).then_some(())
    })
    .await;
    assert!(
        ok.is_some(),
        "ready is 200 again within 20 s of the database's return, without a restart"
    );
    eprintln!(
        "ready recovered {:?} after PostgreSQL came back",
        back.elapsed()
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_not_by_raw_path() {
    let app = TestApp::spawn().await;
    for _ in 0..2 {
        app.get(&format!("/api/v1/_test/items/{}", uuid::Uuid::now_v7()))
            .await;
    }
    app.get("/no/such/route").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"balance_http_requests_total{method="GET",route="/api/v1/_test/items/{id}",status="404"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404"} 1"#),
        "unknown paths share one label"
    );
    assert!(!text.contains("/no/such/route"));
    assert!(text.contains("balance_http_request_duration_seconds_bucket"));
    assert!(text.contains("process_resident_memory_bytes"));
    assert!(text.contains("process_cpu_seconds_total"));
}

#[tokio::test]
async fn metrics_move_to_the_admin_listener_when_it_is_configured() {
    let app = TestApp::spawn_with(&[("BALANCE_ADMIN_LISTEN", "127.0.0.1:0")]).await;
    assert_problem(app.get("/metrics").await, 404, "not_found").await;
    let admin = app.admin_addr.expect("admin listener");
    let resp = app
        .client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("balance_http_requests"));
}

#[tokio::test]
async fn the_docs_page_loads_the_spec_under_a_strict_content_security_policy() {
    let app = TestApp::spawn().await;
    let resp = app.get("/docs").await;
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'sha256-") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-eval"));
    let html = resp.text().await.unwrap();
    assert!(html.contains(r#"data-url="/openapi.json""#));

    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(spec["info"]["title"], "Balance");
}

#[tokio::test]
async fn in_flight_requests_finish_when_the_server_shuts_down() {
    let app = TestApp::spawn().await;
    let url = app.url("/api/v1/_test/slow?ms=700");
    let client = app.client.clone();
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = app.addr;
    app.stop().await;
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "done");
    assert!(
        reqwest::get(format!("http://{addr}/health")).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn a_test_database_is_cloned_from_the_migrated_template() {
    let first = migrated_db().await;
    let second = migrated_db().await;
    assert_ne!(first.name, second.name);
    eprintln!(
        "template clone took {:?} and {:?}",
        first.clone_time, second.clone_time
    );
}
