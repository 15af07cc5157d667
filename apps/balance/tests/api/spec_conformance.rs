//! The committed spec tells the truth: every operation, called for real, answers what the
//! spec says (`TestApp::send` holds each response to it), and the request rules the spec
//! declares are the ones the server enforces. Operations are read from the spec, so a new
//! module's operations are held to this too: the test fails until each is called here.

use identity::totp;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, committed_spec, parts},
    isolation_matrix::body_for,
};

const PASSWORD: &str = "correct horse battery staple";

/// Operations no request can make fail: public, without parameters or a body.
const CANNOT_FAIL: &[(&str, &str)] = &[
    ("get", "/api/v1/audit/public-key"),
    ("get", "/api/v1/plans"),
];

/// A call as `token` (or without credentials); its status and JSON body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let (status, _, body) = parts(app.send(req).await.unwrap()).await;
    (status.as_u16(), body)
}

/// A call that must answer `want` (as `token`, or without credentials when it is empty);
/// its body.
async fn expect(
    app: &TestApp,
    want: u16,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let token = Some(token).filter(|t| !t.is_empty());
    let (status, got) = call(app, method.clone(), path, token, body.as_ref()).await;
    assert_eq!(status, want, "{method} {path}: {got}");
    got
}

fn str_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_string()
}

fn totp_now(secret_b32: &str) -> String {
    let secret = totp::from_base32(secret_b32).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp::code_at(&secret, totp::step_of(now), 6)
}

/// Every operation succeeds once, in an order that builds what the next one needs, with
/// optional fields both `null` and set (the last page and a next page, a key used and
/// revoked, an invitation accepted, a tenant deleted).
async fn succeed_everywhere(
    app: &TestApp,
    plaid: &testkit::plaid::PlaidStandIn,
    stripe: &testkit::stripe::StripeStandIn,
) -> (String, String) {
    use Method as M;
    let signup = |email: &str| json!({"email": email, "password": PASSWORD, "name": "Ada"});
    expect(
        app,
        201,
        M::POST,
        "/api/v1/auth/signup",
        "",
        Some(signup("ada@example.com")),
    )
    .await;
    let token = app.mailed_token("ada@example.com", "verify-email").await;
    let verify = json!({"token": token});
    expect(
        app,
        204,
        M::POST,
        "/api/v1/auth/verify-email",
        "",
        Some(verify),
    )
    .await;
    let (_, refresh) = app.login("ada@example.com", PASSWORD).await;
    let pair = expect(
        app,
        200,
        M::POST,
        "/api/v1/auth/refresh",
        "",
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    let ada = str_of(&pair, "access_token");

    expect(app, 200, M::GET, "/api/v1/me", &ada, None).await;
    let patch = json!({"name": "Ada Lovelace", "time_zone": null});
    expect(app, 200, M::PATCH, "/api/v1/me", &ada, Some(patch)).await;
    expect(app, 200, M::GET, "/api/v1/permissions", &ada, None).await;
    expect(app, 200, M::GET, "/api/v1/audit/public-key", &ada, None).await;

    let enrolled = expect(
        app,
        200,
        M::POST,
        "/api/v1/me/2fa/enroll",
        &ada,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    let code = totp_now(&str_of(&enrolled, "secret"));
    let codes = expect(
        app,
        200,
        M::POST,
        "/api/v1/me/2fa/activate",
        &ada,
        Some(json!({"code": code})),
    )
    .await;
    let recovery = codes["recovery_codes"][0].clone();
    expect(
        app,
        204,
        M::POST,
        "/api/v1/me/2fa/disable",
        &ada,
        Some(json!({"code": recovery})),
    )
    .await;

    // Another session to revoke.
    app.login("ada@example.com", PASSWORD).await;
    let sessions = expect(app, 200, M::GET, "/api/v1/me/sessions", &ada, None).await;
    let mine = sessions.as_array().unwrap().iter();
    let mut not_current = mine
        .filter(|s| s["current"] == false)
        .map(|s| str_of(s, "id"));
    let victim = not_current.next().expect("another session");
    expect(
        app,
        204,
        M::DELETE,
        &format!("/api/v1/me/sessions/{victim}"),
        &ada,
        None,
    )
    .await;
    let (spare, _) = app.login("ada@example.com", PASSWORD).await;
    expect(app, 204, M::POST, "/api/v1/auth/logout", &spare, None).await;

    let created = expect(
        app,
        201,
        M::POST,
        "/api/v1/tenants",
        &ada,
        Some(json!({"name": "Acme"})),
    )
    .await;
    let acme = str_of(&created, "id");
    let beta = str_of(
        &expect(
            app,
            201,
            M::POST,
            "/api/v1/tenants",
            &ada,
            Some(json!({"name": "Beta"})),
        )
        .await,
        "id",
    );
    let first = expect(app, 200, M::GET, "/api/v1/tenants?limit=1", &ada, None).await;
    let cursor = str_of(&first, "next_cursor");
    expect(
        app,
        200,
        M::GET,
        &format!("/api/v1/tenants?limit=1&cursor={cursor}"),
        &ada,
        None,
    )
    .await;
    let t = format!("/api/v1/tenants/{acme}");
    expect(app, 200, M::GET, &t, &ada, None).await;
    expect(
        app,
        200,
        M::PATCH,
        &t,
        &ada,
        Some(json!({"name": "Acme GmbH"})),
    )
    .await;

    expect(app, 200, M::GET, &format!("{t}/roles"), &ada, None).await;
    let role = json!({"name": "auditor", "description": null, "permissions": ["tenant:read", "events:read"]});
    expect(app, 201, M::POST, &format!("{t}/roles"), &ada, Some(role)).await;
    expect(app, 200, M::GET, &format!("{t}/roles/auditor"), &ada, None).await;
    let change = json!({"description": "Reads the audit log", "permissions": null});
    expect(
        app,
        200,
        M::PATCH,
        &format!("{t}/roles/auditor"),
        &ada,
        Some(change),
    )
    .await;

    let invite = |email: &str| json!({"email": email, "roles": ["viewer"]});
    expect(
        app,
        201,
        M::POST,
        &format!("{t}/invitations"),
        &ada,
        Some(invite("bob@example.com")),
    )
    .await;
    let (bob, bob_id) = app.new_user("bob@example.com").await;
    let token = app
        .mailed_token("bob@example.com", "invitations/accept")
        .await;
    expect(
        app,
        200,
        M::POST,
        "/api/v1/invitations/accept",
        &bob,
        Some(json!({"token": token})),
    )
    .await;
    let carol = expect(
        app,
        201,
        M::POST,
        &format!("{t}/invitations"),
        &ada,
        Some(invite("carol@example.com")),
    )
    .await;
    expect(
        app,
        204,
        M::DELETE,
        &format!("{t}/invitations/{}", str_of(&carol, "id")),
        &ada,
        None,
    )
    .await;
    expect(app, 200, M::GET, &format!("{t}/invitations"), &ada, None).await;

    expect(
        app,
        200,
        M::GET,
        &format!("{t}/members?limit=1"),
        &ada,
        None,
    )
    .await;
    let member = format!("{t}/members/{bob_id}");
    expect(
        app,
        200,
        M::PATCH,
        &member,
        &ada,
        Some(json!({"roles": ["auditor"]})),
    )
    .await;

    let key = json!({"name": "ci", "roles": ["viewer"], "expires_at": null});
    let key = expect(app, 201, M::POST, &format!("{t}/api-keys"), &ada, Some(key)).await;
    expect(app, 200, M::GET, &t, &str_of(&key, "secret"), None).await;
    expect(app, 200, M::GET, &format!("{t}/api-keys"), &ada, None).await;
    expect(
        app,
        204,
        M::DELETE,
        &format!("{t}/api-keys/{}", str_of(&key, "id")),
        &ada,
        None,
    )
    .await;
    expect(app, 200, M::GET, &format!("{t}/api-keys"), &ada, None).await;

    expect(app, 200, M::GET, &format!("{t}/events?limit=2"), &ada, None).await;
    expect(app, 200, M::GET, &format!("{t}/events/verify"), &ada, None).await;
    expect(
        app,
        200,
        M::GET,
        &format!("{t}/events/checkpoints"),
        &ada,
        None,
    )
    .await;
    expect(app, 200, M::GET, &format!("{t}/events/export"), &ada, None).await;
    let job = {
        let tenant = acme.parse().unwrap();
        let mut tx = kernel::TenantTx::begin(&app.kernel_db, tenant, kernel::Actor::System)
            .await
            .unwrap();
        let job = jobs::Enqueue::enqueue(
            &mut tx,
            jobs::NewJob::new("default", "test.kind", json!({})),
        );
        tx.commit().await.unwrap();
        job
    };
    expect(app, 200, M::GET, &format!("{t}/jobs/{job}"), &ada, None).await;

    // The ledger: accounts with and without the optional fields, categories two levels deep.
    let bare = json!({"name": "Cash box", "kind": "cash", "currency": "EUR"});
    let bare = expect(
        app,
        201,
        M::POST,
        &format!("{t}/accounts"),
        &ada,
        Some(bare),
    )
    .await;
    let full = json!({
        "name": "Operating", "kind": "checking", "currency": "EUR", "opening_balance": 150_000,
        "opening_date": "2026-01-01", "iban": "DE89 3704 0044 0532 0130 00", "institution": "Commerzbank",
    });
    let full = expect(
        app,
        201,
        M::POST,
        &format!("{t}/accounts"),
        &ada,
        Some(full),
    )
    .await;
    expect(
        app,
        200,
        M::GET,
        &format!("{t}/accounts?limit=1"),
        &ada,
        None,
    )
    .await;
    expect(app, 200, M::GET, &format!("{t}/accounts"), &ada, None).await;
    let account = format!("{t}/accounts/{}", str_of(&full, "id"));
    expect(app, 200, M::GET, &account, &ada, None).await;
    let archive = json!({"archived": true, "institution": null});
    expect(app, 200, M::PATCH, &account, &ada, Some(archive)).await;
    expect(
        app,
        200,
        M::GET,
        &format!("{account}/balances?from=2026-02-01&to=2026-02-03"),
        &ada,
        None,
    )
    .await;
    expect(
        app,
        204,
        M::DELETE,
        &format!("{t}/accounts/{}", str_of(&bare, "id")),
        &ada,
        None,
    )
    .await;
    let operating = str_of(&full, "id");
    let cats = expect(
        app,
        200,
        M::GET,
        &format!("{t}/categories?limit=200"),
        &ada,
        None,
    )
    .await;
    let cat = |name: &str| {
        cats["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| str_of(c, "id"))
            .unwrap()
    };
    let restore = json!({"archived": false});
    expect(app, 200, M::PATCH, &account, &ada, Some(restore)).await;
    let bare_tx = json!({"account_id": operating, "date": "2026-02-01", "amount": -1_999});
    let bare_tx = expect(
        app,
        201,
        M::POST,
        &format!("{t}/transactions"),
        &ada,
        Some(bare_tx),
    )
    .await;
    let full_tx = json!({
        "account_id": operating, "date": "2026-02-02", "value_date": "2026-02-03", "amount": -10_000,
        "currency": "EUR", "merchant": "Landlord", "description": "February rent", "status": "pending",
        "category_id": null, "splits": [
            {"category_id": cat("Rent"), "amount": -8_000, "memo": "office"},
            {"category_id": cat("Utilities"), "amount": -2_000},
        ],
        "notes": "paid early", "tags": ["fixed"],
    });
    expect(
        app,
        201,
        M::POST,
        &format!("{t}/transactions"),
        &ada,
        Some(full_tx),
    )
    .await;
    expect(
        app,
        200,
        M::GET,
        &format!("{t}/transactions?limit=1"),
        &ada,
        None,
    )
    .await;
    expect(
        app,
        200,
        M::GET,
        &format!(
            "{t}/transactions?from=2026-01-01&to=2026-12-31&account_id={operating}&status=pending&tags=fixed&q=rent&source=manual&uncategorized=false&include_transfers=true&min_amount=-20000&max_amount=0"
        ),
        &ada,
        None,
    )
    .await;
    let savings = json!({"name": "Savings", "kind": "savings", "currency": "EUR"});
    let savings = expect(
        app,
        201,
        M::POST,
        &format!("{t}/accounts"),
        &ada,
        Some(savings),
    )
    .await;
    let transfer = json!({
        "from_account_id": operating, "to_account_id": str_of(&savings, "id"), "amount": 500,
        "date": "2026-02-04", "description": "Reserve",
    });
    expect(
        app,
        201,
        M::POST,
        &format!("{t}/transfers"),
        &ada,
        Some(transfer),
    )
    .await;
    let bare_transfer = json!({
        "from_account_id": operating, "to_account_id": str_of(&savings, "id"), "amount": 1,
        "date": "2026-02-04",
    });
    expect(
        app,
        201,
        M::POST,
        &format!("{t}/transfers"),
        &ada,
        Some(bare_transfer),
    )
    .await;
    let leg = json!({"account_id": str_of(&savings, "id"), "date": "2026-02-01", "amount": 1_999});
    let leg = expect(
        app,
        201,
        M::POST,
        &format!("{t}/transactions"),
        &ada,
        Some(leg),
    )
    .await;
    let link = json!({"counterpart_id": str_of(&leg, "id")});
    expect(
        app,
        200,
        M::POST,
        &format!("{t}/transactions/{}/link-transfer", str_of(&bare_tx, "id")),
        &ada,
        Some(link),
    )
    .await;
    expect(
        app,
        200,
        M::GET,
        &format!("{t}/transactions/export?format=csv&account_id={operating}"),
        &ada,
        None,
    )
    .await;
    // Imports: an upload read by the worker, its rows, a preview committed, a revert;
    // profiles.
    let upload = |preview: &'static str| {
        let (content_type, body) = crate::helpers::multipart(
            &[("account_id", &operating), ("preview", preview)],
            Some((
                "march.csv",
                b"Date,Amount,Description\n2026-03-02,-3.50,Coffee\n2026-03-03,-4.00,Lunch\n",
            )),
        );
        app.client
            .post(app.url(&format!("{t}/imports")))
            .bearer_auth(&ada)
            .header("content-type", content_type)
            .body(body)
    };
    let settled = |id: String| {
        let ada = ada.clone();
        let t = t.clone();
        async move {
            for _ in 0..100 {
                let got = expect(app, 200, M::GET, &format!("{t}/imports/{id}"), &ada, None).await;
                if !["queued", "running"].contains(&got["status"].as_str().unwrap()) {
                    return got;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("import {id} did not finish");
        }
    };
    let preview = app.send(upload("true")).await.unwrap();
    assert_eq!(preview.status(), 202);
    let preview = str_of(&preview.json::<Value>().await.unwrap(), "import_id");
    assert_eq!(settled(preview.clone()).await["status"], "previewed");
    expect(
        app,
        200,
        M::GET,
        &format!("{t}/imports/{preview}/rows?state=staged&limit=10"),
        &ada,
        None,
    )
    .await;
    expect(
        app,
        202,
        M::POST,
        &format!("{t}/imports/{preview}/commit"),
        &ada,
        Some(json!({})),
    )
    .await;
    assert_eq!(settled(preview.clone()).await["status"], "completed");
    expect(app, 200, M::GET, &format!("{t}/imports"), &ada, None).await;
    expect(
        app,
        200,
        M::DELETE,
        &format!("{t}/imports/{preview}"),
        &ada,
        None,
    )
    .await;
    let profile = expect(
        app,
        201,
        M::POST,
        &format!("{t}/imports/profiles"),
        &ada,
        Some(json!({"name": "Hausbank", "mapping": {"date": "Buchung", "amount": "Betrag"}})),
    )
    .await;
    let profile = format!("{t}/imports/profiles/{}", str_of(&profile, "id"));
    expect(
        app,
        200,
        M::GET,
        &format!("{t}/imports/profiles"),
        &ada,
        None,
    )
    .await;
    expect(app, 200, M::GET, &profile, &ada, None).await;
    expect(
        app,
        200,
        M::PATCH,
        &profile,
        &ada,
        Some(json!({"name": "Sparkasse"})),
    )
    .await;
    expect(app, 204, M::DELETE, &profile, &ada, None).await;
    // Categorization: rules, their preview and apply, the settings, an on-demand run, an
    // explanation; doubtful suggestions wait, and are decided one and many at a time.
    let rule = expect(
        app,
        201,
        M::POST,
        &format!("{t}/rules"),
        &ada,
        Some(json!({"name": "Bakeries",
            "conditions": {"items": [{"field": "merchant", "op": "contains", "value": "bakery"}]},
            "actions": {"category_id": cat("Meals")}})),
    )
    .await;
    let rule = format!("{t}/rules/{}", str_of(&rule, "id"));
    expect(app, 200, M::GET, &format!("{t}/rules"), &ada, None).await;
    expect(app, 200, M::GET, &rule, &ada, None).await;
    expect(
        app,
        200,
        M::PATCH,
        &rule,
        &ada,
        Some(json!({"position": 5})),
    )
    .await;
    expect(
        app,
        200,
        M::POST,
        &format!("{t}/rules/test"),
        &ada,
        Some(json!({"rule": {
            "conditions": {"items": [{"field": "amount", "op": "sign", "sign": "negative"}]},
            "actions": {"tags": ["out"]}}})),
    )
    .await;
    expect(app, 202, M::POST, &format!("{rule}/apply"), &ada, None).await;
    expect(
        app,
        200,
        M::GET,
        &format!("{t}/categorization/settings"),
        &ada,
        None,
    )
    .await;
    expect(
        app,
        200,
        M::PUT,
        &format!("{t}/categorization/settings"),
        &ada,
        Some(json!({"approval_threshold": 0.99, "llm_enabled": false})),
    )
    .await;
    expect(
        app,
        202,
        M::POST,
        &format!("{t}/transactions/categorize"),
        &ada,
        Some(json!({"filter": {"from": "2026-01-01"}})),
    )
    .await;
    for category in [Some(cat("Software")), None, None] {
        let mut body = json!({"account_id": operating, "date": "2026-02-03", "amount": -4_200,
            "merchant": "Figma"});
        if let Some(c) = category {
            body["category_id"] = json!(c);
        }
        expect(
            app,
            201,
            M::POST,
            &format!("{t}/transactions"),
            &ada,
            Some(body),
        )
        .await;
    }
    let mut waiting = Vec::new();
    for _ in 0..100 {
        let list = expect(app, 200, M::GET, &format!("{t}/approvals"), &ada, None).await;
        waiting = list["data"].as_array().unwrap().clone();
        if waiting.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(waiting.len(), 2, "two doubtful Figma suggestions wait");
    let explained = format!(
        "{t}/transactions/{}/categorization",
        str_of(&waiting[0], "transaction_id")
    );
    expect(app, 200, M::GET, &explained, &ada, None).await;
    expect(
        app,
        200,
        M::POST,
        &format!("{t}/approvals/{}/decision", str_of(&waiting[0], "id")),
        &ada,
        Some(json!({"action": "approve"})),
    )
    .await;
    expect(
        app,
        200,
        M::POST,
        &format!("{t}/approvals/decisions"),
        &ada,
        Some(
            json!({"approval_ids": [str_of(&waiting[1], "id")], "action": "override",
            "category_id": cat("Office")}),
        ),
    )
    .await;
    expect(app, 204, M::DELETE, &rule, &ada, None).await;
    let one = format!("{t}/transactions/{}", str_of(&bare_tx, "id"));
    expect(app, 200, M::GET, &one, &ada, None).await;
    let edit =
        json!({"merchant": "Bakery", "notes": null, "category_id": cat("Meals"), "tags": ["team"]});
    expect(app, 200, M::PATCH, &one, &ada, Some(edit)).await;
    expect(app, 204, M::DELETE, &one, &ada, None).await;
    let parent = json!({"name": "Research", "kind": "expense"});
    let parent = expect(
        app,
        201,
        M::POST,
        &format!("{t}/categories"),
        &ada,
        Some(parent),
    )
    .await;
    let child = json!({"name": "Lab", "kind": "expense", "parent_id": str_of(&parent, "id")});
    let child = expect(
        app,
        201,
        M::POST,
        &format!("{t}/categories"),
        &ada,
        Some(child),
    )
    .await;
    let child = format!("{t}/categories/{}", str_of(&child, "id"));
    expect(app, 200, M::GET, &child, &ada, None).await;
    let rename = json!({"name": "Laboratory"});
    expect(app, 200, M::PATCH, &child, &ada, Some(rename)).await;
    expect(app, 204, M::DELETE, &child, &ada, None).await;

    // Exchange rates (seeded as `balance migrate` does), and one asked for badly.
    balance::platform::seed(&app.db.owner_url).await.unwrap();
    expect(
        app,
        200,
        M::GET,
        "/api/v1/fx/rates?base=USD&quote=JPY&date=2026-10-30",
        "",
        None,
    )
    .await;
    expect(app, 422, M::GET, "/api/v1/fx/rates?quote=usd", "", None).await;

    // Budgets: made, listed, read, changed, its progress, deleted.
    let budgets = format!("{t}/budgets");
    let budget = json!({"name": "Everything", "period": "monthly", "amount": 50_000, "thresholds": [50, 100]});
    let budget = expect(app, 201, M::POST, &budgets, &ada, Some(budget)).await;
    expect(app, 200, M::GET, &budgets, &ada, None).await;
    let one_budget = format!("{budgets}/{}", str_of(&budget, "id"));
    expect(app, 200, M::GET, &one_budget, &ada, None).await;
    let change = json!({"name": "Everything", "period": "quarterly", "amount": 150_000});
    expect(app, 200, M::PATCH, &one_budget, &ada, Some(change)).await;
    expect(
        app,
        200,
        M::GET,
        &format!("{one_budget}/progress"),
        &ada,
        None,
    )
    .await;
    expect(app, 204, M::DELETE, &one_budget, &ada, None).await;
    let goals = format!("{t}/goals");
    let goal = json!({"name": "Reserve", "target_amount": 100_000, "target_date": "2027-06-30"});
    let goal = expect(app, 201, M::POST, &goals, &ada, Some(goal)).await;
    expect(app, 200, M::GET, &goals, &ada, None).await;
    let one_goal = format!("{goals}/{}", str_of(&goal, "id"));
    expect(app, 200, M::GET, &one_goal, &ada, None).await;
    let contribution = json!({"amount": 25_000, "note": "first"});
    expect(
        app,
        200,
        M::POST,
        &format!("{one_goal}/contributions"),
        &ada,
        Some(contribution),
    )
    .await;
    let change = json!({"name": "Reserve", "target_amount": 120_000});
    expect(app, 200, M::PATCH, &one_goal, &ada, Some(change)).await;
    expect(app, 204, M::DELETE, &one_goal, &ada, None).await;

    // Billing: the catalogue, the subscription and limits, a checkout (which makes the
    // customer), the portal, and Stripe's signed webhook.
    expect(app, 200, M::GET, "/api/v1/plans", "", None).await;
    expect(app, 200, M::GET, &format!("{t}/subscription"), &ada, None).await;
    expect(app, 200, M::GET, &format!("{t}/entitlements"), &ada, None).await;
    let checkout = json!({"plan": "team", "success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"});
    expect(
        app,
        200,
        M::POST,
        &format!("{t}/billing/checkout-session"),
        &ada,
        Some(checkout),
    )
    .await;
    let portal = json!({"return_url": "https://app.example.com/billing"});
    expect(
        app,
        200,
        M::POST,
        &format!("{t}/billing/portal-session"),
        &ada,
        Some(portal),
    )
    .await;
    let event = serde_json::to_vec(&json!({
        "id": "evt_conformance", "object": "event", "type": "customer.subscription.updated",
        "created": testkit::stripe::now(), "data": {"object": {"id": "sub_none", "object": "subscription"}}
    }))
    .unwrap();
    let signature =
        testkit::stripe::sign_webhook(&event, &["whsec_conformance"], testkit::stripe::now());
    let (status, _, got) = parts(
        app.send(
            app.client
                .post(app.url("/api/v1/webhooks/stripe"))
                .header("content-type", "application/json")
                .header("stripe-signature", signature)
                .body(event),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(stripe.customers(), 1);
    let (status, _, got) = parts(
        app.send(
            app.client
                .post(app.url("/api/v1/webhooks/stripe"))
                .header("content-type", "application/json")
                .header("stripe-signature", "t=1,v1=00")
                .body("{}"),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{got}");

    // Bank connections: the sandbox's link token, a Plaid item connected, read, synced,
    // its signed webhook taken, then disconnected.
    let links = format!("{t}/bank-connections");
    let link = json!({"provider": "sandbox"});
    expect(
        app,
        200,
        M::POST,
        &format!("{links}/link-token"),
        &ada,
        Some(link),
    )
    .await;
    let public = plaid.create_item();
    let item = plaid.item_id_of(&public);
    let bank = json!({"provider": "plaid", "public_token": public});
    let bank = expect(app, 201, M::POST, &links, &ada, Some(bank)).await;
    expect(app, 200, M::GET, &links, &ada, None).await;
    let one = format!("{links}/{}", str_of(&bank, "id"));
    expect(app, 200, M::GET, &one, &ada, None).await;
    expect(app, 202, M::POST, &format!("{one}/sync"), &ada, None).await;
    let hook = plaid.sync_updates_available_body(&item);
    let (status, _, got) = parts(
        app.send(
            app.client
                .post(app.url(&format!("/api/v1/webhooks/plaid/{acme}")))
                .header("content-type", "application/json")
                .header("plaid-verification", plaid.sign_webhook(&hook))
                .body(hook),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    expect(app, 204, M::DELETE, &one, &ada, None).await;

    expect(app, 204, M::DELETE, &member, &ada, None).await;
    expect(
        app,
        204,
        M::DELETE,
        &format!("{t}/roles/auditor"),
        &ada,
        None,
    )
    .await;
    expect(app, 204, M::DELETE, &t, &ada, None).await;
    // The deleted tenant stays listed, with deleted_at set.
    expect(app, 200, M::GET, "/api/v1/tenants", &ada, None).await;

    let reset = json!({"email": "ada@example.com"});
    expect(
        app,
        202,
        M::POST,
        "/api/v1/auth/password-reset",
        "",
        Some(reset),
    )
    .await;
    let token = app.mailed_token("ada@example.com", "reset-password").await;
    let confirm = json!({"token": token, "new_password": "another horse battery staple"});
    expect(
        app,
        204,
        M::POST,
        "/api/v1/auth/password-reset/confirm",
        "",
        Some(confirm),
    )
    .await;
    let (ada, _) = app
        .login("ada@example.com", "another horse battery staple")
        .await;
    (ada, beta)
}

/// Values of `schema` that each break one rule it declares (`pattern` aside: no regex here).
fn breaking(spec: &Value, schema: &Value) -> Vec<Value> {
    let n = |k: &str| schema[k].as_u64().map(|n| n as usize);
    let mut bad = Vec::new();
    if let Some(max) = n("maxLength") {
        bad.push(json!("x".repeat(max + 1)));
    }
    if let Some(min) = n("minLength").filter(|m| *m > 0) {
        bad.push(json!("x".repeat(min - 1)));
    }
    if schema["format"] == "email" {
        bad.push(json!("not an address"));
    }
    if let Some(max) = n("maxItems") {
        let item = match body_for(spec, &schema["items"]) {
            Value::String(s) if s == "x" => json!("viewer"),
            other => other,
        };
        bad.push(json!(vec![item; max + 1]));
    }
    if n("minItems").is_some_and(|m| m > 0) {
        bad.push(json!([]));
    }
    bad
}

/// Every operation fails in each way the spec lets a client provoke: no credentials (401),
/// an unknown resource (404), an unknown field in the body (422, as `additionalProperties:
/// false` says), each declared rule of a body field broken (422 naming it), `?limit=0`.
async fn fail_everywhere(app: &TestApp, spec: &Value, token: &str, tenant: &str) {
    let mut probed = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let m = method.clone();
            let unknown = uuid::Uuid::now_v7().to_string();
            let own = path
                .replace("{tenant_id}", tenant)
                .replace("{role}", "no-such-role");
            let own = own.replace("{user_id}", &unknown).replace("{id}", &unknown);
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let body = (!schema.is_null()).then(|| body_for(spec, schema));

            if op.get("security").is_some() {
                let (status, got) = call(app, m.clone(), &own, None, body.as_ref()).await;
                assert_eq!(status, 401, "{m} {own} without credentials: {got}");
            }
            if path.contains('{') {
                // Nothing there: an unknown tenant (never the caller's) or an unknown id.
                let gone = path
                    .replace("{tenant_id}", &unknown)
                    .replace("{role}", "no-such-role");
                let gone = gone
                    .replace("{user_id}", &unknown)
                    .replace("{id}", &unknown);
                let (status, got) = call(app, m.clone(), &gone, Some(token), body.as_ref()).await;
                assert_eq!(status, 404, "{m} {gone}: {got}");
            }
            if let Some(valid) = &body {
                let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
                if spec["components"]["schemas"][name]["additionalProperties"] == false {
                    let mut extra = valid.clone();
                    extra["unexpected"] = json!(true);
                    let got = expect(app, 422, m.clone(), &own, token, Some(extra)).await;
                    assert_eq!(got["errors"][0]["field"], "unexpected", "{m} {own}: {got}");
                }
                let properties = &spec["components"]["schemas"][name]["properties"];
                for (field, rules) in properties.as_object().unwrap() {
                    for bad in breaking(spec, rules) {
                        let mut broken = valid.clone();
                        broken[field] = bad.clone();
                        let got = expect(app, 422, m.clone(), &own, token, Some(broken)).await;
                        let fields: Vec<&str> = got["errors"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter_map(|e| e["field"].as_str())
                            .collect();
                        assert!(
                            fields.contains(&field.as_str()),
                            "{m} {own} with {field} = {bad}: {got}"
                        );
                    }
                }
            }
            let parameters = op["parameters"].as_array().into_iter().flatten();
            if parameters.into_iter().any(|p| p["name"] == "limit") {
                let got = expect(app, 422, m.clone(), &format!("{own}?limit=0"), token, None).await;
                assert_eq!(got["errors"][0]["field"], "limit", "{m} {own}: {got}");
            }
            probed += 1;
        }
    }
    assert!(probed >= 40, "{probed} operations");
}

#[tokio::test]
async fn every_operation_answers_what_the_spec_says() {
    let plaid = testkit::plaid::PlaidStandIn::start().await.unwrap();
    let url = plaid.url();
    let stripe = testkit::stripe::StripeStandIn::start().await.unwrap();
    let stripe_url = stripe.url();
    let app = TestApp::spawn_with_worker(&[
        ("BALANCE_PLAID_CLIENT_ID", testkit::plaid::CLIENT_ID),
        ("BALANCE_PLAID_SECRET", testkit::plaid::SECRET),
        ("BALANCE_PLAID_BASE_URL", &url),
        ("BALANCE_STRIPE_SECRET_KEY", testkit::stripe::SECRET_KEY),
        ("BALANCE_STRIPE_API_BASE", &stripe_url),
        ("BALANCE_STRIPE_WEBHOOK_SECRETS", "whsec_conformance"),
        ("BALANCE_CORS_ORIGINS", "https://app.example.com"),
        (
            "BALANCE_PLANS",
            r#"{"team": {"stripe_price_id": "price_conformance"}}"#,
        ),
    ])
    .await;
    let (ada, beta) = succeed_everywhere(&app, &plaid, &stripe).await;
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(testkit::repo_root().join("openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    fail_everywhere(&app, &spec, &ada, &beta).await;

    let answered = app.answered.lock().unwrap().clone();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let statuses: Vec<u16> = answered
                .iter()
                .filter(|a| a.path == *path && a.method == *method)
                .map(|a| a.status)
                .collect();
            assert!(
                statuses.iter().any(|s| (200..300).contains(s)),
                "{method} {path} never succeeded here: {statuses:?}"
            );
            assert!(
                statuses.iter().any(|s| (400..500).contains(s))
                    || CANNOT_FAIL.contains(&(method.as_str(), path.as_str())),
                "{method} {path} never failed here: {statuses:?}"
            );
        }
    }
}

#[test]
fn a_response_that_contradicts_the_spec_is_reported() {
    let spec = committed_spec();
    let path = format!("/api/v1/tenants/{}", uuid::Uuid::now_v7());
    let tenant = json!({"id": uuid::Uuid::now_v7(), "name": "Acme", "plan": "free", "currency": "EUR", "time_zone": "UTC",
        "roles": ["owner"], "created_at": "2026-01-05T10:00:00Z", "deleted_at": null, "version": 1});
    let check = |status: u16, content_type: &str, body: &Value| {
        spec.check_response(
            "GET",
            &path,
            status,
            Some(content_type),
            body.to_string().as_bytes(),
        )
    };
    let json_type = "application/json; charset=utf-8";
    assert_eq!(check(200, json_type, &tenant), Vec::<String>::new());

    let mut wrong = tenant.clone();
    wrong["deleted_at"] = json!(5);
    wrong.as_object_mut().unwrap().remove("version");
    assert_eq!(
        check(200, json_type, &wrong),
        [
            "$: missing required property \"version\"",
            "$.deleted_at: expected string, got 5"
        ]
    );
    let problem = json!({"type": "urn:balance:problem:not_found", "title": "Not found",
        "status": 404, "instance": path, "request_id": "r"});
    assert_eq!(
        check(404, "application/problem+json", &problem),
        ["$: missing required property \"code\""]
    );
    assert_eq!(
        check(418, "application/problem+json", &problem).len(),
        1,
        "an undeclared status"
    );
}
