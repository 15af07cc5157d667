//! Billing over HTTP against the testkit's Stripe stand-in: the public catalogue, billing
//! off without keys, a hosted checkout that makes one customer, Stripe's signed webhook
//! (tampered, wrong secret, old, rotated, malformed, unknown, replayed), every fixture in
//! shuffled orders with duplicates ending in one state, limits under real concurrency, and
//! a tenant going read-only after a failed payment's grace and back.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};
use testkit::stripe::{SECRET_KEY, StripeStandIn, now, sign_webhook};

use crate::helpers::{TestApp, parts};

/// The price the fixtures' subscription is on.
const PRICE: &str = "price_1PgafmB7WZ01zgkW6dKueIc5";
const SECRET: &str = "whsec_current";
const ORIGIN: &str = "https://app.example.com";

fn fixture(name: &str) -> Option<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/stripe");
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.json"))) else {
        eprintln!("skipped: ../shared/fixtures/stripe/{name}.json is absent");
        return None;
    };
    Some(serde_json::from_str(&text).expect("a fixture is JSON"))
}

const FIXTURES: [&str; 6] = [
    "checkout_session_completed",
    "customer_subscription_created",
    "customer_subscription_updated",
    "customer_subscription_deleted",
    "invoice_paid",
    "invoice_payment_failed",
];

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.authed(method, path, token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let (status, _, value) = parts(req.send().await.unwrap()).await;
    (status.as_u16(), value)
}

async fn billing_app(stripe: &StripeStandIn, extra: &[(&str, &str)]) -> TestApp {
    let base = stripe.url();
    let plans = format!(r#"{{"team": {{"stripe_price_id": "{PRICE}"}}}}"#);
    let mut vars: Vec<(&str, &str)> = vec![
        ("BALANCE_STRIPE_SECRET_KEY", SECRET_KEY),
        ("BALANCE_STRIPE_API_BASE", &base),
        ("BALANCE_STRIPE_WEBHOOK_SECRETS", SECRET),
        ("BALANCE_CORS_ORIGINS", ORIGIN),
        ("BALANCE_PLANS", &plans),
    ];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&vars).await
}

/// Posts `body` to the webhook with `signature`.
async fn deliver(app: &TestApp, body: &[u8], signature: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/api/v1/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        req = req.header("stripe-signature", signature);
    }
    let (status, _, value) = parts(req.send().await.unwrap()).await;
    (status.as_u16(), value)
}

async fn signed(app: &TestApp, event: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(event).unwrap();
    deliver(app, &body, Some(&sign_webhook(&body, &[SECRET], now()))).await
}

/// A fixture event made this tenant's, under an id of this run.
fn event_for(name: &str, tenant: &str, run: &str) -> Option<Value> {
    let mut event = fixture(name)?;
    event["id"] = json!(format!("{}_{run}", event["id"].as_str().unwrap()));
    let object = &mut event["data"]["object"];
    if name.starts_with("customer_subscription") {
        object["metadata"] = json!({ "tenant_id": tenant });
    }
    if name == "checkout_session_completed" {
        object["client_reference_id"] = json!(tenant);
    }
    Some(event)
}

/// The stand-in's copy of the fixtures' subscription, for this tenant, in `status`.
fn subscription(tenant: &str, status: &str) -> Option<Value> {
    let mut sub = fixture("customer_subscription_updated")?["data"]["object"].clone();
    sub["metadata"] = json!({ "tenant_id": tenant });
    sub["status"] = json!(status);
    Some(sub)
}

async fn stored_status(app: &TestApp, id: &str) -> Option<String> {
    let mut tx = kernel::SystemTx::begin(&app.kernel_db, kernel::Actor::System)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT status FROM stripe_events WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .unwrap()
}

async fn events_of(app: &TestApp, token: &str, tenant: &str, kind: &str) -> Vec<Value> {
    let (status, body) = call(
        app,
        token,
        Method::GET,
        &format!("/api/v1/tenants/{tenant}/events?type={kind}&limit=200"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn without_stripe_keys_billing_is_off_and_the_free_plan_applies() {
    // The built-in catalogue, as shipped.
    let app = TestApp::spawn_with(&[("BALANCE_PLANS", "{}")]).await;
    let resp = app.get("/api/v1/plans").await;
    let (status, _, plans) = parts(resp).await;
    assert_eq!(status, 200, "{plans}");
    assert_eq!(plans["billing_enabled"], false);
    let ids: Vec<&str> = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["free", "team", "business"]);
    assert!(
        plans["plans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["purchasable"] == false)
    );

    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let (status, body) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/billing/checkout-session"),
        Some(json!({"plan": "team", "success_url": "http://localhost/ok", "cancel_url": "http://localhost/no"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (501, Some("feature_disabled")),
        "{body}"
    );
    let (status, body) = deliver(&app, b"{}", Some("t=1,v1=00")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (501, Some("feature_disabled")),
        "{body}"
    );

    let (status, sub) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/subscription"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(
        (
            sub["plan"].as_str(),
            sub["status"].is_null(),
            sub["read_only"].as_bool()
        ),
        (Some("free"), true, Some(false))
    );
    let (status, ent) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/entitlements"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{ent}");
    let members = ent["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["limit"] == "members")
        .unwrap();
    assert_eq!(
        (members["allowed"].as_i64(), members["used"].as_i64()),
        (Some(3), Some(1))
    );
}

#[tokio::test]
async fn an_owner_upgrades_through_checkout_and_the_webhook_moves_the_plan() {
    let stripe = StripeStandIn::start().await.unwrap();
    let app = billing_app(&stripe, &[]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let ts = t.to_string();
    let checkout = format!("/api/v1/tenants/{t}/billing/checkout-session");
    let body = json!({"plan": "team", "success_url": format!("{ORIGIN}/billing/done"), "cancel_url": format!("{ORIGIN}/billing")});

    // Refused before Stripe is called: a URL elsewhere, a plan that is not for sale.
    for (bad, field) in [
        (
            json!({"plan": "team", "success_url": "https://evil.example/x", "cancel_url": format!("{ORIGIN}/b")}),
            "success_url",
        ),
        (
            json!({"plan": "free", "success_url": format!("{ORIGIN}/a"), "cancel_url": format!("{ORIGIN}/b")}),
            "plan",
        ),
        (
            json!({"plan": "business", "success_url": format!("{ORIGIN}/a"), "cancel_url": format!("{ORIGIN}/b")}),
            "plan",
        ),
        (
            json!({"plan": "gold", "success_url": format!("{ORIGIN}/a"), "cancel_url": "ftp://x"}),
            "plan",
        ),
    ] {
        let (status, problem) = call(&app, &ada, Method::POST, &checkout, Some(bad)).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_eq!(stripe.calls("/v1/customers"), 0);

    // Members without billing:write cannot start one.
    let (bob, bob_id) = app.new_user("bob@example.com").await;
    testkit::seed::member(&app.kernel_db, t, bob_id, &["admin"]).await;
    let (status, _) = call(&app, &bob, Method::POST, &checkout, Some(body.clone())).await;
    assert_eq!(status, 403);

    let (status, session) = call(&app, &ada, Method::POST, &checkout, Some(body.clone())).await;
    assert_eq!(status, 200, "{session}");
    assert!(
        session["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}checkout/", stripe.url()))
    );
    let (status, again) = call(&app, &ada, Method::POST, &checkout, Some(body.clone())).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        stripe.customers(),
        1,
        "one customer whatever the number of checkouts"
    );
    let customer = &stripe.requests("/v1/customers")[0];
    assert_eq!(
        customer.idempotency_key.as_deref(),
        Some(format!("tenant:{t}:customer").as_str())
    );
    assert_eq!(customer.field("metadata[tenant_id]"), Some(ts.as_str()));
    let sessions = stripe.checkout_sessions();
    let first = &sessions[0];
    assert_eq!(first.mode, "subscription");
    assert_eq!(first.client_reference_id.as_deref(), Some(ts.as_str()));
    assert_eq!(first.subscription_metadata.get("tenant_id"), Some(&ts));
    assert_eq!(first.line_items[0].price.as_deref(), Some(PRICE));
    assert!(
        first
            .success_url
            .as_deref()
            .unwrap()
            .ends_with("session_id={CHECKOUT_SESSION_ID}")
    );
    let started = events_of(&app, &ada, &ts, "billing.checkout_started").await;
    assert_eq!(started.len(), 2);

    // Stripe's webhook: the subscription is active on the checkout's customer.
    let Some(mut sub) = subscription(&ts, "active") else {
        return;
    };
    let customer_id = stripe.requests("/v1/customers").len();
    assert_eq!(customer_id, 1);
    sub["customer"] = json!("cus_standin_1");
    stripe.put_subscription(sub);
    let Some(event) = event_for("customer_subscription_created", &ts, "a") else {
        return;
    };
    let (status, received) = signed(&app, &event).await;
    assert_eq!(status, 200, "{received}");
    assert_eq!(
        (received["status"].as_str(), received["duplicate"].as_bool()),
        (Some("pending"), Some(false))
    );
    let id = event["id"].as_str().unwrap();
    let applied = app.platform.billing.apply_event(id).await.unwrap();
    assert!(
        matches!(applied, billing::Applied::Applied { changed: true, .. }),
        "{applied:?}"
    );
    let (_, sub) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/subscription"),
        None,
    )
    .await;
    assert_eq!(
        (sub["plan"].as_str(), sub["status"].as_str()),
        (Some("team"), Some("active")),
        "{sub}"
    );
    let (_, tenant) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}"),
        None,
    )
    .await;
    assert_eq!(tenant["plan"], "team");
    let (_, ent) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/entitlements"),
        None,
    )
    .await;
    let members = ent["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["limit"] == "members")
        .unwrap();
    assert_eq!(members["allowed"], 15);
    let changes = events_of(&app, &ada, &ts, "billing.subscription_updated").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["actor"]["kind"], "system");
    assert_eq!(changes[0]["source_agent"], "billing");
    assert_eq!(changes[0]["payload"]["to"]["plan"], "team");

    // A replay is a 200 that changes nothing; applying it again is a no-op too.
    let (status, replay) = signed(&app, &event).await;
    assert_eq!(
        (status, replay["duplicate"].as_bool()),
        (200, Some(true)),
        "{replay}"
    );
    assert!(matches!(
        app.platform.billing.apply_event(id).await.unwrap(),
        billing::Applied::Skipped(_)
    ));
    assert_eq!(
        events_of(&app, &ada, &ts, "billing.subscription_updated")
            .await
            .len(),
        1
    );

    // Live now: the next checkout is refused, the portal opens on the customer.
    let (status, problem) = call(&app, &ada, Method::POST, &checkout, Some(body)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("already_subscribed"))
    );
    let (status, portal) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/billing/portal-session"),
        Some(json!({"return_url": format!("{ORIGIN}/billing")})),
    )
    .await;
    assert_eq!(status, 200, "{portal}");
    assert!(
        portal["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}portal/", stripe.url()))
    );
    assert_eq!(
        stripe.requests("/v1/billing_portal/sessions")[0].field("customer"),
        Some("cus_standin_1")
    );
}

#[tokio::test]
async fn stripe_unavailable_is_a_retryable_problem_and_stores_nothing_half() {
    let stripe = StripeStandIn::start().await.unwrap();
    let app = billing_app(&stripe, &[]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let checkout = format!("/api/v1/tenants/{t}/billing/checkout-session");
    let body = json!({"plan": "team", "success_url": format!("{ORIGIN}/a"), "cancel_url": format!("{ORIGIN}/b")});
    stripe.fail_next(testkit::stripe::Fault::RateLimited);
    let (status, problem) = call(&app, &ada, Method::POST, &checkout, Some(body.clone())).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("billing_provider_unavailable")),
        "{problem}"
    );
    // The customer call failed: nothing was stored, and the next try makes it.
    let (_, sub) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/subscription"),
        None,
    )
    .await;
    assert!(sub["status"].is_null());
    stripe.fail_path("/v1/checkout/sessions", testkit::stripe::Fault::ServerError);
    let (status, _) = call(&app, &ada, Method::POST, &checkout, Some(body.clone())).await;
    assert_eq!(status, 503);
    let (status, _) = call(&app, &ada, Method::POST, &checkout, Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(stripe.customers(), 1);
    // A re-fetch that fails leaves the event pending for the job's retry.
    let ts = t.to_string();
    let Some(event) = event_for("customer_subscription_updated", &ts, "u") else {
        return;
    };
    let (status, _) = signed(&app, &event).await;
    assert_eq!(status, 200);
    stripe.fail_next(testkit::stripe::Fault::ServerError);
    let id = event["id"].as_str().unwrap();
    let err = app.platform.billing.apply_event(id).await.unwrap_err();
    assert!(
        matches!(err, billing::BillingError::StripeUnavailable(_)),
        "{err:?}"
    );
    assert_eq!(stored_status(&app, id).await.as_deref(), Some("pending"));
}

#[tokio::test]
async fn the_webhook_takes_only_what_a_configured_secret_signed_recently() {
    let stripe = StripeStandIn::start().await.unwrap();
    let app = billing_app(
        &stripe,
        &[("BALANCE_STRIPE_WEBHOOK_SECRETS", "whsec_old,whsec_current")],
    )
    .await;
    let Some(event) = event_for(
        "customer_subscription_created",
        "00000000-0000-0000-0000-000000000000",
        "s",
    ) else {
        return;
    };
    let body = serde_json::to_vec(&event).unwrap();
    let id = event["id"].as_str().unwrap();
    let mut tampered = body.clone();
    let at = tampered.len() - 2;
    tampered[at] = b' ';
    for (bytes, signature) in [
        (&tampered, Some(sign_webhook(&body, &[SECRET], now()))),
        (
            &body,
            Some(sign_webhook(&body, &["whsec_elsewhere"], now())),
        ),
        (&body, Some(sign_webhook(&body, &[SECRET], now() - 301))),
        (&body, Some(sign_webhook(&body, &[SECRET], now() + 301))),
        (&body, Some("v1=abc".to_string())),
        (&body, None),
    ] {
        let (status, problem) = deliver(&app, bytes, signature.as_deref()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("invalid_signature")),
            "{problem}"
        );
        assert_eq!(stored_status(&app, id).await, None, "nothing is stored");
    }
    // Either secret of a rotation, alone or both signatures at once.
    let (status, ok) = deliver(
        &app,
        &body,
        Some(&sign_webhook(&body, &["whsec_old"], now())),
    )
    .await;
    assert_eq!(
        (status, ok["duplicate"].as_bool()),
        (200, Some(false)),
        "{ok}"
    );
    let (status, ok) = deliver(
        &app,
        &body,
        Some(&sign_webhook(&body, &["whsec_old", SECRET], now() - 250)),
    )
    .await;
    assert_eq!(
        (status, ok["duplicate"].as_bool()),
        (200, Some(true)),
        "{ok}"
    );

    // Signed but not an event: kept as failed, never retried; redelivered it is a replay.
    let junk = b"{\"id\": \"evt_x\", \"object\":";
    let (status, got) = deliver(&app, junk, Some(&sign_webhook(junk, &[SECRET], now()))).await;
    assert_eq!(
        (status, got["status"].as_str()),
        (200, Some("failed")),
        "{got}"
    );
    let (status, got) = deliver(&app, junk, Some(&sign_webhook(junk, &[SECRET], now()))).await;
    assert_eq!(
        (status, got["duplicate"].as_bool()),
        (200, Some(true)),
        "{got}"
    );
    // A type billing does not use: stored, ignored.
    let other = json!({"id": "evt_other", "object": "event", "type": "charge.refunded", "created": now(), "data": {"object": {}}});
    let (status, got) = signed(&app, &other).await;
    assert_eq!(
        (status, got["status"].as_str()),
        (200, Some("ignored")),
        "{got}"
    );
    assert_eq!(
        stored_status(&app, "evt_other").await.as_deref(),
        Some("ignored")
    );
}

/// A deterministic shuffle (xorshift) with some events delivered twice.
fn shuffled(seed: u64) -> Vec<&'static str> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut order: Vec<&str> = FIXTURES.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let twice = order[(next() % 6) as usize];
    order.insert((next() % 7) as usize, twice);
    order
}

/// Applies every fixture to a fresh tenant in `order`; returns its subscription.
async fn play(
    app: &TestApp,
    stripe: &StripeStandIn,
    token: &str,
    order: &[&str],
    run: &str,
    sub: Option<&str>,
) -> Option<Value> {
    let t = app.create_tenant(token, &format!("Run {run}")).await;
    let ts = t.to_string();
    if let Some(status) = sub {
        put(stripe, &ts, status)?;
    }
    for name in order {
        let event = event_for(name, &ts, run)?;
        let (status, got) = signed(app, &event).await;
        assert_eq!(status, 200, "{got}");
        app.platform
            .billing
            .apply_event(event["id"].as_str().unwrap())
            .await
            .unwrap();
    }
    let (status, view) = call(
        app,
        token,
        Method::GET,
        &format!("/api/v1/tenants/{t}/subscription"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    Some(view)
}

fn put(stripe: &StripeStandIn, tenant: &str, status: &str) -> Option<()> {
    stripe.put_subscription(subscription(tenant, status)?);
    Some(())
}

#[tokio::test]
async fn every_fixture_in_any_order_and_twice_ends_in_the_same_state() {
    let stripe = StripeStandIn::start().await.unwrap();
    let app = billing_app(&stripe, &[]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    // Re-fetched: whatever the order, the state is Stripe's now.
    for (n, seed) in [1u64, 7, 42, 1234].into_iter().enumerate() {
        let order = shuffled(seed);
        let Some(view) = play(
            &app,
            &stripe,
            &ada,
            &order,
            &format!("r{n}"),
            Some("active"),
        )
        .await
        else {
            return;
        };
        assert_eq!(
            (
                view["plan"].as_str(),
                view["status"].as_str(),
                view["cancel_at_period_end"].as_bool()
            ),
            (Some("team"), Some("active"), Some(false)),
            "{order:?}: {view}"
        );
        assert_eq!(
            view["current_period_end"], "2024-08-26T00:34:14+00:00",
            "{view}"
        );
    }
    // Gone at Stripe (404): each subscription event's own object decides, the newest
    // `created` winning, so every order ends canceled, on free.
    stripe.remove_subscription("sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
    let mut ends = Vec::new();
    for (n, seed) in [3u64, 5, 99].into_iter().enumerate() {
        let order = shuffled(seed);
        let Some(view) = play(&app, &stripe, &ada, &order, &format!("g{n}"), None).await else {
            return;
        };
        ends.push(view.clone());
        assert_eq!(
            (view["plan"].as_str(), view["status"].as_str()),
            (Some("free"), Some("canceled")),
            "{order:?}: {view}"
        );
    }
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{ends:?}");
}

#[tokio::test]
async fn a_failed_payment_makes_the_tenant_read_only_after_the_grace_and_a_paid_one_lifts_it() {
    let stripe = StripeStandIn::start().await.unwrap();
    let base = stripe.url();
    let plans = format!(r#"{{"team": {{"stripe_price_id": "{PRICE}"}}}}"#);
    let app = TestApp::spawn_with_worker(&[
        ("BALANCE_STRIPE_SECRET_KEY", SECRET_KEY),
        ("BALANCE_STRIPE_API_BASE", &base),
        ("BALANCE_STRIPE_WEBHOOK_SECRETS", SECRET),
        ("BALANCE_CORS_ORIGINS", ORIGIN),
        ("BALANCE_PLANS", &plans),
        ("BALANCE_BILLING_GRACE_DAYS", "0"),
    ])
    .await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let ts = t.to_string();
    let accounts = format!("/api/v1/tenants/{t}/accounts");
    let new_account =
        json!({"name": "Cash", "kind": "cash", "currency": "EUR", "opening_balance": 0});
    let subscription_of = || async {
        call(
            &app,
            &ada,
            Method::GET,
            &format!("/api/v1/tenants/{t}/subscription"),
            None,
        )
        .await
        .1
    };

    // An invitation sent while the workspace is in good standing.
    let (status, _) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/invitations"),
        Some(json!({"email": "bob@example.com", "roles": ["viewer"]})),
    )
    .await;
    assert_eq!(status, 201);
    let invitation =
        testkit::seed::mailed_token(&app.kernel_db, "bob@example.com", "invitation").await;

    // The fixtures' customer, as Stripe has it.
    stripe.put_customer("cus_QXg1o8vcGmoR32");
    let Some(()) = put(&stripe, &ts, "past_due") else {
        return;
    };
    let Some(failed) = event_for("invoice_payment_failed", &ts, "f") else {
        return;
    };
    let (status, _) = signed(&app, &failed).await;
    assert_eq!(status, 200);
    // The job applies it, then the grace (none here) runs out and the tenant is read-only.
    let sub = testkit::eventually(std::time::Duration::from_secs(30), || async {
        let sub = subscription_of().await;
        (sub["read_only"] == true).then_some(sub)
    })
    .await
    .expect("read-only after the grace");
    assert_eq!(
        (sub["status"].as_str(), sub["plan"].as_str()),
        (Some("past_due"), Some("team"))
    );
    let sink = app.smtp.as_ref().unwrap();
    testkit::eventually(std::time::Duration::from_secs(30), || async {
        sink.messages().into_iter().find(|m| {
            m.to.iter().any(|to| to == "ada@example.com")
                && m.data.contains("payment for your Balance workspace failed")
        })
    })
    .await
    .expect("the owner is told of the failed payment");
    assert_eq!(
        events_of(&app, &ada, &ts, "billing.payment_failed")
            .await
            .len(),
        1
    );
    assert_eq!(
        events_of(&app, &ada, &ts, "billing.read_only_entered")
            .await
            .len(),
        1
    );

    // Nobody joins a read-only workspace, not even by an invitation sent before.
    let (bob, _) = app.new_user("bob@example.com").await;
    let (status, problem) = call(
        &app,
        &bob,
        Method::POST,
        "/api/v1/invitations/accept",
        Some(json!({"token": invitation})),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (402, Some("tenant_read_only")),
        "{problem}"
    );

    // Reads work, writes answer 402, billing still works (the person can pay).
    let (status, problem) = call(
        &app,
        &ada,
        Method::POST,
        &accounts,
        Some(new_account.clone()),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (402, Some("tenant_read_only")),
        "{problem}"
    );
    let (status, _) = call(&app, &ada, Method::GET, &accounts, None).await;
    assert_eq!(status, 200);
    let (status, portal) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/billing/portal-session"),
        Some(json!({"return_url": format!("{ORIGIN}/billing")})),
    )
    .await;
    assert_eq!(status, 200, "{portal}");

    // Paid: active again, writable again.
    let Some(()) = put(&stripe, &ts, "active") else {
        return;
    };
    let Some(paid) = event_for("invoice_paid", &ts, "p") else {
        return;
    };
    let (status, _) = signed(&app, &paid).await;
    assert_eq!(status, 200);
    testkit::eventually(std::time::Duration::from_secs(30), || async {
        (subscription_of().await["read_only"] == false).then_some(())
    })
    .await
    .expect("writable after the payment");
    let (status, created) = call(&app, &ada, Method::POST, &accounts, Some(new_account)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        events_of(&app, &ada, &ts, "billing.read_only_left")
            .await
            .len(),
        1
    );
    // The same failure redelivered tells nobody twice.
    let (_, again) = signed(&app, &failed).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        events_of(&app, &ada, &ts, "billing.payment_failed")
            .await
            .len(),
        1
    );
}

/// Runs two requests at once.
async fn both(
    app: &TestApp,
    a: (&str, Method, &str, Value),
    b: (&str, Method, &str, Value),
) -> [(u16, Value); 2] {
    let (x, y) = tokio::join!(
        call(app, a.0, a.1, a.2, Some(a.3)),
        call(app, b.0, b.1, b.2, Some(b.3))
    );
    [x, y]
}

fn one_passed(results: &[(u16, Value); 2], created: u16, limit: &str) {
    let mut statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [created, 402], "{results:?}");
    let refused = results.iter().find(|r| r.0 == 402).unwrap();
    assert_eq!(refused.1["code"], "plan_limit_reached", "{refused:?}");
    assert_eq!(refused.1["limit"], limit, "{refused:?}");
}

#[tokio::test]
async fn limits_hold_under_concurrent_creates_and_a_sync_is_never_refused() {
    let plans = r#"{"free": {"limits": {"members": 2, "bank_connections": 1, "transactions_per_month": 5}}}"#;
    let app = TestApp::spawn_with(&[("BALANCE_PLANS", plans)]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let ts = t.to_string();

    // Members: two invitations at 1 of 2, accepted at once: one joins.
    let mut tokens = Vec::new();
    for email in ["bob@example.com", "cy@example.com"] {
        let (status, inv) = call(
            &app,
            &ada,
            Method::POST,
            &format!("/api/v1/tenants/{t}/invitations"),
            Some(json!({"email": email, "roles": ["viewer"]})),
        )
        .await;
        assert_eq!(status, 201, "{inv}");
        tokens.push(testkit::seed::mailed_token(&app.kernel_db, email, "invitation").await);
    }
    let (bob, _) = app.new_user("bob@example.com").await;
    let (cy, _) = app.new_user("cy@example.com").await;
    let accept = "/api/v1/invitations/accept";
    let results = both(
        &app,
        (&bob, Method::POST, accept, json!({"token": tokens[0]})),
        (&cy, Method::POST, accept, json!({"token": tokens[1]})),
    )
    .await;
    one_passed(&results, 200, "members");
    // Full: no more invitations either.
    let (status, problem) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/invitations"),
        Some(json!({"email": "dee@example.com", "roles": ["viewer"]})),
    )
    .await;
    assert_eq!(
        (status, problem["limit"].as_str()),
        (402, Some("members")),
        "{problem}"
    );

    // Transactions: 4 of 5 entered, then two at once: one is written.
    let (status, account) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/accounts"),
        Some(json!({"name": "Cash", "kind": "cash", "currency": "EUR", "opening_balance": 0})),
    )
    .await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["id"].as_str().unwrap();
    let txs = format!("/api/v1/tenants/{t}/transactions");
    let entry = |n: i64| json!({"account_id": account_id, "date": "2026-11-30", "amount": -n, "description": format!("coffee {n}")});
    for n in 1..=4 {
        let (status, body) = call(&app, &ada, Method::POST, &txs, Some(entry(n))).await;
        assert_eq!(status, 201, "{body}");
    }
    let results = both(
        &app,
        (&ada, Method::POST, &txs, entry(5)),
        (&ada, Method::POST, &txs, entry(6)),
    )
    .await;
    one_passed(&results, 201, "transactions_per_month");
    let (_, listed) = call(&app, &ada, Method::GET, &format!("{txs}?limit=50"), None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 5);
    let (_, acc) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/accounts/{account_id}"),
        None,
    )
    .await;
    let written: i64 = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(
        acc["balance"].as_i64(),
        Some(written),
        "the refused one moved no balance"
    );

    // Bank connections: two sandbox banks at once at 0 of 1: one connects.
    let links = format!("/api/v1/tenants/{t}/bank-connections");
    let results = both(
        &app,
        (&ada, Method::POST, &links, json!({"provider": "sandbox"})),
        (&ada, Method::POST, &links, json!({"provider": "sandbox"})),
    )
    .await;
    one_passed(&results, 201, "bank_connections");
    let (_, ent) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/entitlements"),
        None,
    )
    .await;
    let used = |name: &str| {
        ent["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["limit"] == name)
            .unwrap()["used"]
            .as_i64()
    };
    assert_eq!(
        (
            used("members"),
            used("bank_connections"),
            used("transactions_per_month")
        ),
        (Some(2), Some(1), Some(5)),
        "{ent}"
    );

    // The bank's sync is never refused: its transactions arrive past the limit, and
    // crossing it is reported once.
    let connection = results.iter().find(|r| r.0 == 201).unwrap().1["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = app
        .platform
        .banking
        .sync(
            &app.kernel_db,
            t,
            uuid::Uuid::parse_str(&connection).unwrap(),
            None,
        )
        .await
        .unwrap();
    assert!(
        matches!(&run, banking::SyncRun::Applied(r) if r.added > 0),
        "{run:?}"
    );
    let crossed = events_of(&app, &ada, &ts, "billing.plan_limit_reached").await;
    assert_eq!(crossed.len(), 1, "{crossed:?}");
    assert_eq!(crossed[0]["payload"]["limit"], "transactions_per_month");
    let (_, ent) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/entitlements"),
        None,
    )
    .await;
    let over = ent["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["limit"] == "transactions_per_month")
        .unwrap()
        .clone();
    assert_eq!(over["over"], true, "{ent}");
    // Over the limit, a person still cannot add one.
    let (status, problem) = call(&app, &ada, Method::POST, &txs, Some(entry(7))).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (402, Some("plan_limit_reached"))
    );
    assert_problem_shape(&problem);
}

fn assert_problem_shape(problem: &Value) {
    assert_eq!(problem["status"], 402);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("transactions per month"),
        "{problem}"
    );
}

#[tokio::test]
async fn an_import_over_the_month_is_refused_whole_and_so_is_committing_a_preview_over_it() {
    let tight = r#"{"free": {"limits": {"transactions_per_month": 2}}}"#;
    let app = TestApp::spawn_with_worker(&[("BALANCE_PLANS", tight)]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let (_, account) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/accounts"),
        Some(json!({"name": "Operating", "kind": "checking", "currency": "EUR"})),
    )
    .await;
    let account = account["id"].as_str().unwrap();
    let csv = b"Date,Amount,Description\n2026-03-02,-3.50,Coffee\n2026-03-03,1200.00,Salary\n2026-03-04,-9.00,Lunch\n";
    let upload = |fields: Vec<(&'static str, String)>| {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (content_type, body) = crate::helpers::multipart(&fields, Some(("march.csv", csv)));
        app.authed(Method::POST, &format!("/api/v1/tenants/{t}/imports"), &ada)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let finished = |at: String| {
        let app = &app;
        let ada = &ada;
        async move {
            testkit::eventually(std::time::Duration::from_secs(30), || async {
                let (_, import) = call(app, ada, Method::GET, &at, None).await;
                (!["queued", "running"].contains(&import["status"].as_str().unwrap()))
                    .then_some(import)
            })
            .await
            .expect("the import finishes")
        }
    };
    // Three new rows, two allowed: the import fails whole, nothing is written.
    let (status, headers, _) = parts(
        upload(vec![("account_id", account.to_string())])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202);
    let at = headers["location"].to_str().unwrap().to_string();
    let import = finished(at.clone()).await;
    assert_eq!(import["status"], "failed", "{import}");
    assert_eq!(import["error"]["code"], "plan_limit_reached", "{import}");
    let (_, listed) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/transactions"),
        None,
    )
    .await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        0,
        "nothing promoted"
    );
    let (_, ent) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/entitlements"),
        None,
    )
    .await;
    let used = ent["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["limit"] == "transactions_per_month")
        .unwrap()["used"]
        .clone();
    assert_eq!(used, 0, "the refused import counted nothing: {ent}");

    // A preview knows its three new rows: committing it is 402 at once.
    let (status, headers, _) = parts(
        upload(vec![
            ("account_id", account.to_string()),
            ("preview", "true".into()),
        ])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 202);
    let preview = headers["location"].to_str().unwrap().to_string();
    let previewed = finished(preview.clone()).await;
    assert_eq!(previewed["status"], "previewed", "{previewed}");
    let (status, problem) = call(
        &app,
        &ada,
        Method::POST,
        &format!("{preview}/commit"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, problem["limit"].as_str()),
        (402, Some("transactions_per_month")),
        "{problem}"
    );
}

#[tokio::test]
async fn a_downgrade_deletes_nothing_and_over_limit_things_keep_working() {
    let stripe = StripeStandIn::start().await.unwrap();
    let app = billing_app(&stripe, &[]).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let ts = t.to_string();
    let Some(()) = put(&stripe, &ts, "active") else {
        return;
    };
    let Some(created) = event_for("customer_subscription_created", &ts, "up") else {
        return;
    };
    signed(&app, &created).await;
    app.platform
        .billing
        .apply_event(created["id"].as_str().unwrap())
        .await
        .unwrap();
    // On team: five members, over free's three.
    for n in 0..4 {
        let (_, user) = app.new_user(&format!("m{n}@example.com")).await;
        testkit::seed::member(&app.kernel_db, t, user, &["viewer"]).await;
    }
    // Canceled: back on free, every member stays, nobody more can join.
    let Some(()) = put(&stripe, &ts, "canceled") else {
        return;
    };
    let Some(deleted) = event_for("customer_subscription_deleted", &ts, "down") else {
        return;
    };
    signed(&app, &deleted).await;
    app.platform
        .billing
        .apply_event(deleted["id"].as_str().unwrap())
        .await
        .unwrap();
    let (_, sub) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/subscription"),
        None,
    )
    .await;
    assert_eq!(
        (
            sub["plan"].as_str(),
            sub["status"].as_str(),
            sub["read_only"].as_bool()
        ),
        (Some("free"), Some("canceled"), Some(false))
    );
    let (_, members) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/members"),
        None,
    )
    .await;
    assert_eq!(members["data"].as_array().unwrap().len(), 5);
    let (_, ent) = call(
        &app,
        &ada,
        Method::GET,
        &format!("/api/v1/tenants/{t}/entitlements"),
        None,
    )
    .await;
    let m = ent["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["limit"] == "members")
        .unwrap()
        .clone();
    assert_eq!(
        (
            m["allowed"].as_i64(),
            m["used"].as_i64(),
            m["over"].as_bool()
        ),
        (Some(3), Some(5), Some(true))
    );
    let (status, problem) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/invitations"),
        Some(json!({"email": "late@example.com", "roles": ["viewer"]})),
    )
    .await;
    assert_eq!((status, problem["limit"].as_str()), (402, Some("members")));
    // The workspace itself keeps working: a change that adds nothing limited passes.
    let (status, _) = call(
        &app,
        &ada,
        Method::POST,
        &format!("/api/v1/tenants/{t}/accounts"),
        Some(json!({"name": "Cash", "kind": "cash", "currency": "EUR"})),
    )
    .await;
    assert_eq!(status, 201);
    let changes = events_of(&app, &ada, &ts, "billing.subscription_updated").await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["payload"]["from"]["plan"], "team");
    assert_eq!(changes[0]["payload"]["to"]["status"], "canceled");
}
