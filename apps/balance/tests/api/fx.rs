//! Exchange rates: the shipped ECB history seeded, `GET /fx/rates` against hand-computed
//! figures (cross rates, a weekend, the 7-day bound, a retired currency), conversions with
//! JPY's zero exponent, the daily fetch against the testkit's ECB stand-in (and its
//! failures), and the tenant's base currency.

use chrono::NaiveDate;
use kernel::Currency;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::ecb::{EcbStandIn, Fault, daily_xml};

use crate::helpers::{TestApp, parts};

async fn rate(app: &TestApp, query: &str) -> (u16, Value) {
    let (status, _, body) = parts(app.get(&format!("/api/v1/fx/rates?{query}")).await).await;
    (status.as_u16(), body)
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn seeded(vars: &[(&str, &str)]) -> TestApp {
    let app = TestApp::spawn_with(vars).await;
    let written = balance::platform::seed(&app.db.owner_url).await.unwrap();
    assert!(written > 150_000, "{written} rates seeded");
    assert_eq!(
        balance::platform::seed(&app.db.owner_url).await.unwrap(),
        0,
        "seeding again writes nothing"
    );
    app
}

#[tokio::test]
async fn reference_rates_are_the_ecbs_crossed_through_the_euro() {
    let app = seeded(&[]).await;
    let (status, usd) = rate(&app, "quote=USD&date=2026-10-30").await;
    assert_eq!(status, 200, "{usd}");
    assert_eq!(
        (usd["base"].as_str(), usd["rate"].as_str()),
        (Some("EUR"), Some("1.1172"))
    );
    // GBP per USD: 0.8338 / 1.1172 = 0.7463301110…
    let (_, cross) = rate(&app, "base=USD&quote=GBP&date=2026-10-30").await;
    assert_eq!(cross["rate"], "0.746330111");
    // A Saturday and a Sunday take Friday's rates.
    for weekend in ["2026-10-31", "2026-11-01"] {
        let (status, body) = rate(&app, &format!("quote=JPY&date={weekend}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["rate"].as_str(), body["quote_rate_date"].as_str()),
            (Some("175.68"), Some("2026-10-30"))
        );
    }
    // More than 7 days after the last rate: missing, said so.
    let (status, missing) = rate(&app, "quote=USD&date=2026-11-09").await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (422, Some("fx_rate_missing")),
        "{missing}"
    );
    // A retired currency: the Cypriot pound until the euro replaced it in 2008.
    let (status, cyp) = rate(&app, "quote=CYP&date=2005-06-01").await;
    assert_eq!(status, 200, "{cyp}");
    assert_eq!(cyp["rate"], "0.5751");
    let (status, gone) = rate(&app, "quote=CYP&date=2009-01-05").await;
    assert_eq!(
        (status, gone["code"].as_str()),
        (422, Some("fx_rate_missing")),
        "{gone}"
    );
    let (status, bad) = rate(&app, "quote=usd").await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (422, Some("validation_failed")),
        "{bad}"
    );
    // No date: the newest rates known.
    let (_, newest) = rate(&app, "quote=USD").await;
    assert_eq!(newest["date"], "2026-10-30");
}

#[tokio::test]
async fn conversions_round_once_to_the_targets_minor_units() {
    let app = seeded(&[]).await;
    let fx = &app.platform.fx;
    let mut tx = kernel::SystemTx::begin(&app.kernel_db, kernel::Actor::System)
        .await
        .unwrap();
    let c = |code: &str| Currency::parse(code).unwrap();
    let on = day("2026-10-30");
    // 1,000 JPY (no minor units) in USD: 1000 × 1.1172 / 175.68 = 6.3593… → 6.36.
    let usd = fx
        .convert(&mut tx, 1_000, c("JPY"), c("USD"), on)
        .await
        .unwrap();
    assert_eq!(usd.amount, 636);
    // 12.34 USD in JPY: 12.34 × 175.68 / 1.1172 = 1940.46… → 1,940.
    assert_eq!(
        fx.convert(&mut tx, 1_234, c("USD"), c("JPY"), on)
            .await
            .unwrap()
            .amount,
        1_940
    );
    // Spending stays negative; EUR is the base on every date.
    assert_eq!(
        fx.convert(&mut tx, -10_000, c("EUR"), c("USD"), on)
            .await
            .unwrap()
            .amount,
        -11_172
    );
    assert_eq!(
        fx.convert(&mut tx, -10_000, c("USD"), c("EUR"), on)
            .await
            .unwrap()
            .amount,
        -8_951
    );
    // A Sunday converts at Friday's rates, and says so.
    let sunday = fx
        .convert(&mut tx, 10_000, c("EUR"), c("GBP"), day("2026-11-01"))
        .await
        .unwrap();
    assert_eq!((sunday.amount, sunday.to_date), (8_338, on));
    let missing = fx
        .convert(&mut tx, 100, c("USD"), c("EUR"), day("2026-11-20"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, fx::FxError::RateMissing { .. }),
        "{missing:?}"
    );
    // Many amounts through one table read once.
    let table = fx
        .table(&mut tx, &["USD", "GBP"], day("2026-10-01"), on)
        .await
        .unwrap();
    let first = table
        .convert(10_000, c("USD"), c("GBP"), day("2026-10-01"))
        .unwrap();
    let last = table.convert(10_000, c("USD"), c("GBP"), on).unwrap();
    assert_ne!(first.amount, last.amount);
    assert_eq!(last.amount, 7_463);
}

#[tokio::test]
async fn the_daily_file_keeps_rates_current_and_its_failures_are_retried() {
    let ecb = EcbStandIn::start().await.unwrap();
    let url = ecb.url();
    let app = seeded(&[("BALANCE_FX_DAILY_URL", &url)]).await;
    ecb.set_body(daily_xml(
        "2026-11-02",
        &[("USD", "1.1164"), ("JPY", "175.2")],
    ));
    let written = app.platform.fx.fetch_daily().await.unwrap();
    assert_eq!(written, Some(2));
    let (_, usd) = rate(&app, "quote=USD&date=2026-11-02").await;
    assert_eq!(
        (usd["rate"].as_str(), usd["quote_rate_date"].as_str()),
        (Some("1.1164"), Some("2026-11-02"))
    );
    // The same file again changes nothing; a correction of the day wins.
    assert_eq!(app.platform.fx.fetch_daily().await.unwrap(), Some(0));
    ecb.set_body(daily_xml("2026-11-02", &[("USD", "1.1165")]));
    assert_eq!(app.platform.fx.fetch_daily().await.unwrap(), Some(1));
    // Outages and bodies that are not the file: an error the job retries, nothing written.
    ecb.fail_next(Fault::Status(503));
    assert!(matches!(
        app.platform.fx.fetch_daily().await,
        Err(fx::FxError::Source(_))
    ));
    ecb.fail_next(Fault::Body(
        "<html>Please log in to the Wi-Fi</html>".into(),
    ));
    assert!(matches!(
        app.platform.fx.fetch_daily().await,
        Err(fx::FxError::Source(_))
    ));
    let (_, usd) = rate(&app, "quote=USD&date=2026-11-02").await;
    assert_eq!(usd["rate"], "1.1165");
    assert_eq!(ecb.calls(), 5);
    // Unset, the job has nothing to do.
    let plain = TestApp::spawn().await;
    assert_eq!(plain.platform.fx.fetch_daily().await.unwrap(), None);
}

#[tokio::test]
async fn a_tenant_has_a_base_currency_set_at_creation_and_changeable() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let (_, _, tenant) = parts(
        app.authed(Method::GET, &format!("/api/v1/tenants/{t}"), &ada)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tenant["currency"], "EUR");
    let (status, _, usd) = parts(
        app.authed(Method::POST, "/api/v1/tenants", &ada)
            .json(&json!({"name": "Acme US", "currency": "USD"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), usd["currency"].as_str()),
        (201, Some("USD")),
        "{usd}"
    );
    let us = usd["id"].as_str().unwrap();
    let (status, _, changed) = parts(
        app.authed(Method::PATCH, &format!("/api/v1/tenants/{us}"), &ada)
            .json(&json!({"currency": "GBP"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (
            status.as_u16(),
            changed["currency"].as_str(),
            changed["name"].as_str()
        ),
        (200, Some("GBP"), Some("Acme US"))
    );
    for bad in [
        json!({"currency": "XXX1"}),
        json!({"currency": "ABC"}),
        json!({}),
    ] {
        let (status, _, problem) = parts(
            app.authed(Method::PATCH, &format!("/api/v1/tenants/{us}"), &ada)
                .json(&bad)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status.as_u16(), 422, "{bad}: {problem}");
    }
    let (_, _, events) = parts(
        app.authed(
            Method::GET,
            &format!("/api/v1/tenants/{us}/events?type=tenant.currency_changed"),
            &ada,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        events["data"][0]["payload"],
        json!({"from": "USD", "to": "GBP"})
    );
}
