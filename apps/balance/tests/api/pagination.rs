//! Cursor pagination over HTTP: every row once, in order; cursors bound to their query.

use std::collections::HashSet;

use crate::helpers::{TestApp, assert_problem, parts, seed};

#[tokio::test]
async fn paging_through_a_list_returns_every_row_once_newest_first() {
    let app = TestApp::spawn().await;
    let tenant = seed::tenant(&app.kernel_db, "A").await;
    let other = seed::tenant(&app.kernel_db, "B").await;
    for _ in 0..120 {
        let user = seed::user(&app.kernel_db).await;
        seed::member(&app.kernel_db, tenant, user, &["viewer"]).await;
    }
    let stranger = seed::user(&app.kernel_db).await;
    seed::member(&app.kernel_db, other, stranger, &["owner"]).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("/api/v1/_test/tenants/{tenant}/members?limit=50");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, _, page) = parts(app.get(&url).await).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|m| {
            (
                m["created_at"].as_str().unwrap().to_string(),
                m["user_id"].as_str().unwrap().to_string(),
            )
        }));
        assert_eq!(page["has_more"], page["next_cursor"].is_string());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120);
    assert_eq!(
        seen.iter().map(|s| &s.1).collect::<HashSet<_>>().len(),
        120,
        "no row twice"
    );
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, ties broken by id"
    );
    assert!(
        !seen.iter().any(|s| s.1 == stranger.to_string()),
        "another tenant's rows never appear"
    );

    let (_, _, default) = parts(
        app.get(&format!("/api/v1/_test/tenants/{tenant}/members"))
            .await,
    )
    .await;
    assert_eq!(
        default["data"].as_array().unwrap().len(),
        50,
        "default limit"
    );
}

#[tokio::test]
async fn a_bad_limit_or_a_foreign_or_forged_cursor_is_a_422() {
    let app = TestApp::spawn().await;
    let (a, b) = (
        seed::tenant(&app.kernel_db, "A").await,
        seed::tenant(&app.kernel_db, "B").await,
    );
    for tenant in [a, b] {
        for _ in 0..3 {
            let user = seed::user(&app.kernel_db).await;
            seed::member(&app.kernel_db, tenant, user, &[]).await;
        }
    }
    for limit in ["0", "201", "-1", "many"] {
        let resp = app
            .get(&format!("/api/v1/_test/tenants/{a}/members?limit={limit}"))
            .await;
        let problem = assert_problem(resp, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "limit", "{limit}");
    }
    let (_, _, page) = parts(
        app.get(&format!("/api/v1/_test/tenants/{a}/members?limit=1"))
            .await,
    )
    .await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    // The cursor works where it was issued...
    assert_eq!(
        app.get(&format!(
            "/api/v1/_test/tenants/{a}/members?limit=1&cursor={cursor}"
        ))
        .await
        .status(),
        200
    );
    // ...and nowhere else, and not when edited.
    let mut forged = cursor.clone().into_bytes();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (tenant, c) in [(b, cursor.as_str()), (a, forged.as_str()), (a, "garbage")] {
        let resp = app
            .get(&format!(
                "/api/v1/_test/tenants/{tenant}/members?cursor={c}"
            ))
            .await;
        let problem = assert_problem(resp, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "cursor");
    }
}
