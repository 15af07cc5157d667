//! The Plaid client against the testkit's Plaid stand-in: real HTTP, Plaid's JSON, Plaid's
//! error bodies, ES256-signed webhooks. No database.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use banking::{
    LinkRequest, Provider, ProviderError, SyncPage, Webhook, WebhookEvent,
    plaid::{Plaid, PlaidConfig, parse_error, parse_sync_page},
};
use chrono::{NaiveDate, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use kernel::Secret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::plaid::{CLIENT_ID, Fault, PlaidAccount, PlaidStandIn, PlaidTx, SECRET};

fn config(url: &str, timeout: Duration) -> PlaidConfig {
    PlaidConfig {
        base_url: url.to_string(),
        client_id: CLIENT_ID.to_string(),
        secret: Secret::new(SECRET.to_string()),
        client_name: "Balance".to_string(),
        country_codes: vec!["US".to_string()],
        timeout,
    }
}

async fn setup() -> (PlaidStandIn, Plaid) {
    let plaid = PlaidStandIn::start()
        .await
        .expect("the Plaid stand-in starts");
    let client = Plaid::new(config(&plaid.url(), Duration::from_secs(10)));
    (plaid, client)
}

/// A new item, exchanged: its access token and item id.
async fn linked(plaid: &PlaidStandIn, client: &Plaid) -> (Secret<String>, String) {
    let public = plaid.create_item();
    let exchanged = client.exchange(&public).await.expect("the exchange");
    (exchanged.access_token, exchanged.item_id)
}

/// Every page of a loop from `cursor`, `count` at a time.
async fn sync_all(
    client: &Plaid,
    access: &Secret<String>,
    mut cursor: Option<String>,
    count: u32,
) -> Vec<SyncPage> {
    let mut pages = Vec::new();
    loop {
        let page = client
            .sync(access, cursor.as_deref(), count)
            .await
            .expect("a sync page");
        let more = page.has_more;
        cursor = Some(page.next_cursor.clone());
        pages.push(page);
        if !more {
            return pages;
        }
        assert!(pages.len() < 20, "the loop does not end");
    }
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a date")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Asserts neither the API secret nor `token` appears in the error, shown either way.
fn assert_clean(error: &ProviderError, token: &str) {
    let text = format!("{error} {error:?}");
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
    assert!(
        token.is_empty() || !text.contains(token),
        "a token leaked: {text}"
    );
}

// ---------------------------------------------------------------------------------------
// Link and exchange
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_link_token_for_a_new_item_asks_for_two_years_of_transactions() {
    let (plaid, client) = setup().await;
    let request = LinkRequest {
        client_user_id: "tenant-42".to_string(),
        webhook: Some("https://balance.example/webhooks/plaid".to_string()),
        access_token: None,
    };
    let before = Utc::now();
    let token = client.link_token(&request).await.expect("a link token");
    assert!(token.link_token.starts_with("link-sandbox-"), "{token:?}");
    let lifetime = token.expires_at - before;
    assert!(
        lifetime > chrono::Duration::minutes(239) && lifetime <= chrono::Duration::minutes(241),
        "a link token lives 4 h: {lifetime}"
    );

    let records = plaid.link_tokens();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].link_token, token.link_token);
    assert!(!records[0].update_mode);
    assert_eq!(records[0].products, vec!["transactions".to_string()]);
    assert_eq!(records[0].client_user_id, "tenant-42");
    assert_eq!(
        records[0].webhook.as_deref(),
        Some("https://balance.example/webhooks/plaid")
    );

    let body = &plaid.requests("/link/token/create")[0];
    assert_eq!(body["client_name"], json!("Balance"));
    assert_eq!(body["language"], json!("en"));
    assert_eq!(body["country_codes"], json!(["US"]));
    assert_eq!(body["user"], json!({ "client_user_id": "tenant-42" }));
    assert_eq!(body["transactions"], json!({ "days_requested": 730 }));
    assert!(body.get("access_token").is_none());
    assert!(
        body.get("secret").is_none() && !body.to_string().contains(SECRET),
        "the secret travels in a header, never in the body"
    );
}

#[tokio::test]
async fn an_update_mode_link_token_names_the_item_and_no_products() {
    let (plaid, client) = setup().await;
    let (access, _) = linked(&plaid, &client).await;
    let request = LinkRequest {
        client_user_id: "tenant-42".to_string(),
        webhook: None,
        access_token: Some(access.clone()),
    };
    let token = client
        .link_token(&request)
        .await
        .expect("an update-mode token");
    assert!(token.link_token.starts_with("link-sandbox-"));

    let records = plaid.link_tokens();
    assert!(records[0].update_mode);
    assert_eq!(
        records[0].access_token.as_deref(),
        Some(access.expose().as_str())
    );
    assert!(records[0].products.is_empty());
    let body = &plaid.requests("/link/token/create")[0];
    assert!(body.get("products").is_none(), "{body}");
    assert!(body.get("transactions").is_none(), "{body}");
    assert!(body.get("webhook").is_none(), "{body}");
}

#[tokio::test]
async fn a_public_token_is_exchanged_once() {
    let (plaid, client) = setup().await;
    let public = plaid.create_item();
    let exchanged = client.exchange(&public).await.expect("the exchange");
    assert!(
        exchanged
            .access_token
            .expose()
            .starts_with("access-sandbox-")
    );
    assert_eq!(
        exchanged.item_id,
        plaid.item_id_of(exchanged.access_token.expose())
    );
    assert_eq!(format!("{:?}", exchanged.access_token), "***");
    assert_eq!(exchanged.institution, None);

    let again = client.exchange(&public).await.expect_err("single use");
    assert!(
        matches!(&again, ProviderError::Refused(m) if m.starts_with("INVALID_PUBLIC_TOKEN")),
        "{again:?}"
    );
    assert!(!again.is_transient());
    assert_clean(&again, &public);
    assert_eq!(plaid.calls("/item/public_token/exchange"), 2);
}

#[tokio::test]
async fn the_stand_ins_sandbox_endpoint_makes_an_item_over_http() {
    let (plaid, client) = setup().await;
    let response = reqwest::Client::new()
        .post(format!("{}/sandbox/public_token/create", plaid.url()))
        .header("PLAID-CLIENT-ID", CLIENT_ID)
        .header("PLAID-SECRET", SECRET)
        .header("Plaid-Version", "2020-09-14")
        .json(&json!({ "institution_id": "ins_109508", "initial_products": ["transactions"] }))
        .send()
        .await
        .expect("the stand-in answers");
    assert!(response.status().is_success());
    let body: Value = response.json().await.expect("JSON");
    let public = body["public_token"].as_str().expect("a public token");
    assert!(public.starts_with("public-sandbox-"), "{body}");
    let exchanged = client.exchange(public).await.expect("the exchange");
    assert_eq!(
        client
            .accounts(&exchanged.access_token)
            .await
            .unwrap()
            .len(),
        2
    );
}

// ---------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn balances_are_minor_units_in_our_sign() {
    let (plaid, client) = setup().await;
    let (access, item) = linked(&plaid, &client).await;
    let ids = plaid.account_ids(&item);
    plaid.set_balance(&item, &ids[1], "1234.56");
    plaid.add_account(
        &item,
        PlaidAccount {
            current: Some("65262.00".to_string()),
            ..PlaidAccount::new("Mortgage", "loan", "mortgage")
        },
    );
    plaid.add_account(
        &item,
        PlaidAccount {
            iso_currency_code: None,
            unofficial_currency_code: Some("BTC".to_string()),
            current: Some("0.5".to_string()),
            ..PlaidAccount::new("Coins", "investment", "crypto exchange")
        },
    );

    let accounts = client.accounts(&access).await.expect("the accounts");
    assert_eq!(accounts.len(), 4);
    let checking = &accounts[0];
    assert_eq!(checking.id, ids[0]);
    assert_eq!(checking.name, "Plaid Checking");
    assert_eq!(
        checking.official_name.as_deref(),
        Some("Plaid Gold Standard 0% Interest Checking")
    );
    assert_eq!(checking.mask.as_deref(), Some("0000"));
    assert_eq!(checking.kind, "depository");
    assert_eq!(checking.subtype.as_deref(), Some("checking"));
    assert_eq!(checking.currency.as_deref(), Some("USD"));
    assert_eq!(checking.current_balance, Some(120050));
    assert_eq!(checking.available_balance, Some(110050));

    let card = &accounts[1];
    assert_eq!(
        (card.kind.as_str(), card.subtype.as_deref()),
        ("credit", Some("credit card"))
    );
    assert_eq!(
        card.current_balance,
        Some(-123456),
        "a card's debt is negative"
    );
    assert_eq!(card.available_balance, Some(159000), "credit left to spend");

    assert_eq!(
        accounts[2].current_balance,
        Some(-6526200),
        "a loan's debt is negative"
    );
    assert_eq!(accounts[2].available_balance, None);
    assert_eq!(accounts[3].currency, None, "an unofficial currency");
    assert_eq!(
        accounts[3].current_balance,
        Some(50),
        "read with two decimals"
    );
}

// ---------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_sync_of_three_pages_of_two_keeps_every_literal_exact() {
    let (plaid, client) = setup().await;
    let (access, item) = linked(&plaid, &client).await;
    let ids = plaid.account_ids(&item);
    plaid.add(
        &item,
        PlaidTx::new(
            "tx-walmart",
            &ids[0],
            "72.10",
            "2024-03-01",
            "PURCHASE WM SUPERCENTER",
        )
        .merchant("Walmart")
        .category("GENERAL_MERCHANDISE")
        .authorized("2024-02-29"),
    );
    plaid.add(
        &item,
        PlaidTx::new(
            "tx-salary",
            &ids[0],
            "-1500.00",
            "2024-03-01",
            "PAYROLL ACME",
        ),
    );
    plaid.add(
        &item,
        PlaidTx::new("tx-hold", &ids[1], "0.01", "2024-03-02", "AUTH HOLD").pending(),
    );
    plaid.add(
        &item,
        PlaidTx::new("tx-posted", &ids[1], "0.01", "2024-03-03", "AUTH HOLD").replacing("tx-hold"),
    );
    plaid.remove(&item, "tx-hold");
    plaid.modify(
        &item,
        PlaidTx::new(
            "tx-walmart",
            &ids[0],
            "80.00",
            "2024-03-01",
            "PURCHASE WM SUPERCENTER",
        )
        .merchant("Walmart"),
    );

    let pages = sync_all(&client, &access, None, 2).await;
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages.iter().map(|p| p.has_more).collect::<Vec<_>>(),
        [true, true, false]
    );

    let first = &pages[0];
    assert_eq!(first.added.len(), 2);
    let walmart = &first.added[0];
    assert_eq!(walmart.id, "tx-walmart");
    assert_eq!(walmart.account_id, ids[0]);
    assert_eq!(walmart.amount, -7210, "72.10 out, Plaid's sign inverted");
    assert_eq!(walmart.currency.as_deref(), Some("USD"));
    assert_eq!(walmart.date, date("2024-03-01"));
    assert_eq!(walmart.authorized_date, Some(date("2024-02-29")));
    assert_eq!(walmart.merchant_name.as_deref(), Some("Walmart"));
    assert_eq!(walmart.name, "PURCHASE WM SUPERCENTER");
    assert_eq!(
        walmart.category_hint.as_deref(),
        Some("GENERAL_MERCHANDISE")
    );
    assert!(!walmart.pending);
    assert_eq!(first.added[1].amount, 150000, "1500.00 in");
    assert_eq!(first.added[1].category_hint, None);

    let second = &pages[1];
    assert_eq!(second.added.len(), 2);
    assert_eq!(
        (second.added[0].amount, second.added[0].pending),
        (-1, true)
    );
    assert_eq!(second.added[1].amount, -1);
    assert_eq!(
        second.added[1].pending_transaction_id.as_deref(),
        Some("tx-hold")
    );

    let third = &pages[2];
    assert!(third.added.is_empty());
    assert_eq!(third.removed.len(), 1);
    assert_eq!(third.removed[0].id, "tx-hold");
    assert_eq!(
        third.removed[0].account_id.as_deref(),
        Some(ids[1].as_str())
    );
    assert_eq!(third.modified.len(), 1);
    assert_eq!(third.modified[0].amount, -8000);

    for page in &pages {
        assert_eq!(page.accounts.len(), 2, "every page carries the accounts");
        assert_eq!(page.accounts[0].current_balance, Some(120050));
        assert_eq!(page.accounts[1].current_balance, Some(-41000));
        assert!(!page.next_cursor.is_empty());
    }

    let bodies = plaid.requests("/transactions/sync");
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies[0].get("cursor").is_none(),
        "the first call has no cursor"
    );
    assert_eq!(bodies[1]["cursor"], json!(pages[0].next_cursor));
    assert_eq!(bodies[2]["cursor"], json!(pages[1].next_cursor));
    for body in &bodies {
        assert_eq!(body["count"], json!(2));
        assert_eq!(body["access_token"], json!(access.expose()));
        assert_eq!(
            body["options"]["include_personal_finance_category"],
            json!(true)
        );
        assert!(!body.to_string().contains(SECRET));
    }

    // From the last cursor: nothing new, then what arrives next.
    let last = pages[2].next_cursor.clone();
    let empty = client.sync(&access, Some(&last), 2).await.unwrap();
    assert!(empty.added.is_empty() && empty.modified.is_empty() && empty.removed.is_empty());
    assert!(!empty.has_more);
    plaid.add(
        &item,
        PlaidTx::new("tx-late", &ids[0], "5", "2024-03-04", "LATE"),
    );
    let late = client.sync(&access, Some(&last), 2).await.unwrap();
    assert_eq!(late.added.len(), 1);
    assert_eq!(late.added[0].amount, -500);
}

#[tokio::test]
async fn the_stand_in_writes_amount_literals_verbatim() {
    let (plaid, client) = setup().await;
    let (access, item) = linked(&plaid, &client).await;
    let ids = plaid.account_ids(&item);
    for (id, amount) in [("a", "72.10"), ("b", "-1500.00"), ("c", "0.01")] {
        plaid.add(&item, PlaidTx::new(id, &ids[0], amount, "2024-03-01", "X"));
    }
    let text = reqwest::Client::new()
        .post(format!("{}/transactions/sync", plaid.url()))
        .header("PLAID-CLIENT-ID", CLIENT_ID)
        .header("PLAID-SECRET", SECRET)
        .header("Plaid-Version", "2020-09-14")
        .json(&json!({ "access_token": access.expose(), "count": 10 }))
        .send()
        .await
        .expect("the stand-in answers")
        .text()
        .await
        .expect("a body");
    for literal in [
        r#""amount":72.10,"#,
        r#""amount":-1500.00,"#,
        r#""amount":0.01,"#,
        r#""current":1200.50"#,
    ] {
        assert!(text.contains(literal), "{literal} in {text}");
    }
    // And the client reads that very text.
    let page = parse_sync_page(text.as_bytes()).expect("the page parses");
    let amounts: Vec<i64> = page.added.iter().map(|t| t.amount).collect();
    assert_eq!(amounts, [-7210, 150000, -1]);
}

#[tokio::test]
async fn the_count_is_capped_at_500() {
    let (plaid, client) = setup().await;
    let (access, _) = linked(&plaid, &client).await;
    client
        .sync(&access, None, 10_000)
        .await
        .expect("a capped count");
    client.sync(&access, None, 0).await.expect("a raised count");
    let counts: Vec<Value> = plaid
        .requests("/transactions/sync")
        .iter()
        .map(|b| b["count"].clone())
        .collect();
    assert_eq!(counts, [json!(500), json!(1)]);
}

#[tokio::test]
async fn rows_without_an_iso_currency_have_none_and_two_decimals() {
    let (plaid, client) = setup().await;
    let (access, item) = linked(&plaid, &client).await;
    let ids = plaid.account_ids(&item);
    plaid.add(
        &item,
        PlaidTx::new("tx-btc", &ids[0], "0.25", "2024-03-01", "COINS").unofficial("BTC"),
    );
    plaid.add(
        &item,
        PlaidTx::new("tx-yen", &ids[0], "1500", "2024-03-01", "TOKYO").currency("JPY"),
    );
    let page = client.sync(&access, None, 10).await.expect("a page");
    assert_eq!(page.added[0].currency, None);
    assert_eq!(page.added[0].amount, -25);
    assert_eq!(page.added[1].currency.as_deref(), Some("JPY"));
    assert_eq!(page.added[1].amount, -1500, "yen have no minor unit");
}

#[tokio::test]
async fn a_not_ready_item_gives_an_empty_cursor() {
    let (plaid, client) = setup().await;
    let (access, item) = linked(&plaid, &client).await;
    plaid.set_not_ready(&item, true);
    let page = client.sync(&access, None, 10).await.expect("a page");
    assert_eq!(page.next_cursor, "");
    assert!(!page.has_more && page.added.is_empty());
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn each_fault_maps_to_its_provider_error_once() {
    let (plaid, client) = setup().await;
    let (access, _) = linked(&plaid, &client).await;
    type Check = fn(&ProviderError) -> bool;
    let cases: [(Fault, Check); 5] = [
        (Fault::ItemLoginRequired, |e| {
            matches!(e, ProviderError::NeedsReauth { code, message }
                if code == "ITEM_LOGIN_REQUIRED"
                    && message == "The login credentials for this Item have changed.")
        }),
        (
            Fault::ItemNotFound,
            |e| matches!(e, ProviderError::Ended { code, .. } if code == "ITEM_NOT_FOUND"),
        ),
        (Fault::RateLimited, |e| {
            matches!(e, ProviderError::RateLimited)
        }),
        (
            Fault::ServerError,
            |e| matches!(e, ProviderError::Unavailable(m) if m.starts_with("INTERNAL_SERVER_ERROR")),
        ),
        (Fault::Malformed, |e| matches!(e, ProviderError::Refused(_))),
    ];
    for (fault, check) in cases {
        plaid.fail_next(fault.clone());
        let error = client
            .sync(&access, None, 100)
            .await
            .expect_err("the fault");
        assert!(check(&error), "{fault:?} gave {error:?}");
        assert_clean(&error, access.expose());
        assert!(!plaid.fault_pending());
        client
            .sync(&access, None, 100)
            .await
            .unwrap_or_else(|e| panic!("after {fault:?}, the next call succeeds: {e:?}"));

        plaid.fail_next(fault.clone());
        let error = client.accounts(&access).await.expect_err("the fault");
        assert!(check(&error), "{fault:?} on /accounts/get gave {error:?}");
    }
    assert!(ProviderError::RateLimited.is_transient());
}

#[tokio::test]
async fn a_mutation_during_pagination_fails_a_later_page_and_the_restart_succeeds() {
    let (plaid, client) = setup().await;
    let (access, item) = linked(&plaid, &client).await;
    let ids = plaid.account_ids(&item);
    for n in 0..3 {
        plaid.add(
            &item,
            PlaidTx::new(format!("tx-{n}"), &ids[0], "1.00", "2024-03-01", "X"),
        );
    }
    plaid.fail_next(Fault::MutationDuringPagination);
    let first = client.sync(&access, None, 2).await.expect("the first page");
    assert!(first.has_more);
    assert!(
        plaid.fault_pending(),
        "the loop's first page is not the one"
    );
    let error = client
        .sync(&access, Some(&first.next_cursor), 2)
        .await
        .expect_err("a later page");
    assert_eq!(error, ProviderError::MutationDuringPagination);
    assert!(error.is_transient());
    assert_eq!(error.code(), "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION");

    let pages = sync_all(&client, &access, None, 2).await;
    let ids: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.added.iter().map(|t| t.id.as_str()))
        .collect();
    assert_eq!(ids, ["tx-0", "tx-1", "tx-2"]);
}

#[tokio::test]
async fn a_slow_answer_times_out_as_unavailable() {
    let plaid = PlaidStandIn::start().await.expect("the stand-in");
    let client = Plaid::new(config(&plaid.url(), Duration::from_millis(300)));
    let (access, _) = linked(&plaid, &client).await;
    plaid.fail_next(Fault::Slow(Duration::from_secs(3)));
    let error = client.accounts(&access).await.expect_err("a timeout");
    assert!(matches!(&error, ProviderError::Unavailable(_)), "{error:?}");
    assert!(error.is_transient());
    client.accounts(&access).await.expect("fast again");
}

#[tokio::test]
async fn an_unreachable_plaid_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let client = Plaid::new(config(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(5),
    ));
    let error = client
        .exchange("public-sandbox-x")
        .await
        .expect_err("nobody listens");
    assert!(matches!(&error, ProviderError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn wrong_keys_are_refused_without_echoing_them() {
    let plaid = PlaidStandIn::start().await.expect("the stand-in");
    let wrong = "not-the-secret-but-still-secret-9876";
    let client = Plaid::new(PlaidConfig {
        secret: Secret::new(wrong.to_string()),
        ..config(&plaid.url(), Duration::from_secs(5))
    });
    let error = client
        .exchange(&plaid.create_item())
        .await
        .expect_err("bad keys");
    assert!(
        matches!(&error, ProviderError::Refused(m) if m.starts_with("INVALID_API_KEYS")),
        "{error:?}"
    );
    assert!(!format!("{error} {error:?}").contains(wrong));
}

#[tokio::test]
async fn a_disconnected_item_has_ended() {
    let (plaid, client) = setup().await;
    let (access, _) = linked(&plaid, &client).await;
    client.disconnect(&access).await.expect("the removal");
    assert_eq!(
        plaid.requests("/item/remove")[0]["access_token"],
        json!(access.expose())
    );

    let ended = |e: &ProviderError| matches!(e, ProviderError::Ended { code, .. } if code == "ITEM_NOT_FOUND");
    let error = client.accounts(&access).await.expect_err("gone");
    assert!(ended(&error), "{error:?}");
    assert!(!error.is_transient());
    assert_clean(&error, access.expose());
    let error = client.sync(&access, None, 10).await.expect_err("gone");
    assert!(ended(&error), "{error:?}");
    let update = LinkRequest {
        client_user_id: "tenant-42".to_string(),
        webhook: None,
        access_token: Some(access.clone()),
    };
    let error = client.link_token(&update).await.expect_err("gone");
    assert!(ended(&error), "{error:?}");

    let unknown = Secret::new("access-sandbox-00000000-0000-0000-0000-000000000000".to_string());
    let error = client.accounts(&unknown).await.expect_err("never was");
    assert!(
        matches!(&error, ProviderError::Ended { code, .. } if code == "INVALID_ACCESS_TOKEN"),
        "{error:?}"
    );
    assert_clean(&error, unknown.expose());
}

// ---------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------

/// Headers with `Plaid-Verification` spelt as Plaid spells it (matched case-insensitively).
fn signed(jwt: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_bytes(b"Plaid-Verification").expect("a header name"),
        HeaderValue::from_str(jwt).expect("a header value"),
    );
    headers
}

fn claims(body: &[u8], iat: i64) -> Value {
    let hash = kernel::hex::encode(Sha256::digest(body).as_slice());
    json!({ "iat": iat, "request_body_sha256": hash })
}

async fn refused(client: &Plaid, headers: &HeaderMap, body: &[u8], reason: &str) {
    match client.verify_webhook(headers, body).await {
        Err(ProviderError::BadWebhook(m)) => assert!(m.contains(reason), "{reason:?} in {m:?}"),
        other => panic!("expected a bad webhook ({reason}), got {other:?}"),
    }
}

#[tokio::test]
async fn a_signed_webhook_verifies_and_its_key_is_cached() {
    let (plaid, client) = setup().await;
    let body = plaid.sync_updates_available_body("item-1");
    let webhook = client
        .verify_webhook(&signed(&plaid.sign_webhook(&body)), &body)
        .await
        .expect("a good webhook");
    assert_eq!(
        webhook,
        Webhook {
            item_id: "item-1".to_string(),
            event: WebhookEvent::SyncUpdatesAvailable
        }
    );
    assert_eq!(
        plaid.requests("/webhook_verification_key/get")[0],
        json!({ "key_id": plaid.webhook_kid() })
    );

    let body = plaid.item_error_body("item-1", "ITEM_LOGIN_REQUIRED");
    let webhook = client
        .verify_webhook(&signed(&plaid.sign_webhook(&body)), &body)
        .await
        .expect("a good webhook");
    assert_eq!(
        webhook.event,
        WebhookEvent::ItemError("ITEM_LOGIN_REQUIRED".to_string())
    );

    let body = br#"{"webhook_type": "TRANSACTIONS", "webhook_code": "DEFAULT_UPDATE", "item_id": "item-1", "new_transactions": 3}"#;
    let webhook = client
        .verify_webhook(&signed(&plaid.sign_webhook(body)), body)
        .await
        .expect("a good webhook");
    assert_eq!(
        webhook.event,
        WebhookEvent::Ignored("DEFAULT_UPDATE".to_string())
    );

    // A minute old is fine.
    let body = plaid.sync_updates_available_body("item-1");
    let jwt = plaid.sign_webhook_at(&body, now() - 60);
    client
        .verify_webhook(&signed(&jwt), &body)
        .await
        .expect("a minute old");

    assert_eq!(
        plaid.calls("/webhook_verification_key/get"),
        1,
        "the key is cached by kid"
    );
}

#[tokio::test]
async fn a_forged_signature_is_refused() {
    let (plaid, client) = setup().await;
    let body = plaid.sync_updates_available_body("item-1");
    refused(
        &client,
        &signed(&plaid.forge_webhook(&body)),
        &body,
        "signature",
    )
    .await;
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let (plaid, client) = setup().await;
    let body = plaid.sync_updates_available_body("item-1");
    let jwt = plaid.sign_webhook(&body);
    let tampered = plaid.sync_updates_available_body("item-2");
    refused(&client, &signed(&jwt), &tampered, "hash").await;
    // Whitespace counts: the hash is of the raw bytes, not of the JSON.
    let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    refused(&client, &signed(&jwt), &compact, "hash").await;
}

#[tokio::test]
async fn a_stale_or_future_webhook_is_refused() {
    let (plaid, client) = setup().await;
    let body = plaid.sync_updates_available_body("item-1");
    let stale = plaid.sign_webhook_at(&body, now() - 6 * 60);
    refused(&client, &signed(&stale), &body, "stale").await;
    let future = plaid.sign_webhook_at(&body, now() + 6 * 60);
    refused(&client, &signed(&future), &body, "future").await;
}

#[tokio::test]
async fn a_webhook_that_is_not_es256_is_refused_before_any_key_is_fetched() {
    let (plaid, client) = setup().await;
    let body = plaid.sync_updates_available_body("item-1");
    for alg in ["HS256", "none", "ES384", "RS256"] {
        let header = json!({ "alg": alg, "kid": plaid.webhook_kid(), "typ": "JWT" });
        let jwt = plaid.sign_webhook_with(&header, &claims(&body, now()));
        refused(&client, &signed(&jwt), &body, "ES256").await;
    }
    assert_eq!(plaid.calls("/webhook_verification_key/get"), 0);
}

#[tokio::test]
async fn a_webhook_without_the_header_or_a_jwt_is_refused() {
    let (plaid, client) = setup().await;
    let body = plaid.sync_updates_available_body("item-1");
    refused(
        &client,
        &HeaderMap::new(),
        &body,
        "no Plaid-Verification header",
    )
    .await;
    refused(&client, &signed("not.a-jwt"), &body, "not a JWT").await;
    refused(&client, &signed("a.b.c"), &body, "base64url").await;
}

#[tokio::test]
async fn a_webhook_signed_with_an_unknown_kid_is_refused() {
    let (plaid, client) = setup().await;
    let body = plaid.sync_updates_available_body("item-1");
    let header = json!({ "alg": "ES256", "kid": "no-such-kid", "typ": "JWT" });
    let jwt = plaid.sign_webhook_with(&header, &claims(&body, now()));
    refused(&client, &signed(&jwt), &body, "verification key").await;
    assert_eq!(
        plaid.calls("/webhook_verification_key/get"),
        1,
        "it asked Plaid"
    );
}

#[tokio::test]
async fn a_webhook_signed_with_an_expired_key_is_refused() {
    let (plaid, client) = setup().await;
    plaid.expire_webhook_key(now() - 60);
    let body = plaid.sync_updates_available_body("item-1");
    refused(
        &client,
        &signed(&plaid.sign_webhook(&body)),
        &body,
        "expired",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The shared fixtures (Plaid's own examples), read at run time
// ---------------------------------------------------------------------------------------

#[test]
fn the_shared_plaid_fixtures_parse() {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let dir = manifest.join("../../../shared/fixtures/plaid");
    if !dir.is_dir() {
        eprintln!(
            "skipping the Plaid fixture test: {} is absent",
            dir.display()
        );
        return;
    }
    let read = |name: &str| std::fs::read(dir.join(name)).expect("a fixture");

    let page = parse_sync_page(&read("transactions_sync.json")).expect("Plaid's example page");
    assert_eq!(page.added.len(), 1);
    let walmart = &page.added[0];
    assert_eq!(walmart.id, "lPNjeW1nR6CDn5okmGQ6hEpMo4lLNoSrzqDje");
    assert_eq!(walmart.account_id, "BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp");
    assert_eq!(walmart.amount, -7210, "72.1 out");
    assert_eq!(walmart.currency.as_deref(), Some("USD"));
    assert_eq!(walmart.date, date("2023-09-24"));
    assert_eq!(walmart.authorized_date, Some(date("2023-09-22")));
    assert!(!walmart.pending);
    assert_eq!(
        walmart.pending_transaction_id.as_deref(),
        Some("no86Eox18VHMvaOVL7gPUM9ap3aR1LsAVZ5nc")
    );
    assert_eq!(walmart.name, "PURCHASE WM SUPERCENTER #1700");
    assert_eq!(walmart.merchant_name.as_deref(), Some("Walmart"));
    assert_eq!(
        walmart.category_hint.as_deref(),
        Some("GENERAL_MERCHANDISE")
    );

    assert_eq!(page.modified.len(), 1);
    assert_eq!(page.modified[0].amount, -2834);
    assert!(page.modified[0].pending);
    assert_eq!(
        page.modified[0].category_hint.as_deref(),
        Some("FOOD_AND_DRINK")
    );
    assert_eq!(page.removed.len(), 1);
    assert_eq!(page.removed[0].id, "CmdQTNgems8BT1B7ibkoUXVPyAeehT3Tmzk0l");
    assert_eq!(page.accounts.len(), 1);
    assert_eq!(page.accounts[0].current_balance, Some(11094));
    assert_eq!(page.accounts[0].available_balance, Some(11094));
    assert_eq!(page.accounts[0].kind, "depository");
    assert!(page.next_cursor.starts_with("tVUUL15lYQN5rBnf"));
    assert!(!page.has_more);

    let error = parse_error(400, &read("error_item_login_required.json"));
    assert_eq!(
        error,
        ProviderError::NeedsReauth {
            code: "ITEM_LOGIN_REQUIRED".to_string(),
            message: "The login credentials for this Item have changed.".to_string(),
        }
    );
}
