//! The ledger over HTTP: accounts, their balances, categories.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, parts};

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.authed(method, path, token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let (status, _, body) = parts(req.send().await.unwrap()).await;
    (status.as_u16(), body)
}

#[tokio::test]
async fn a_new_tenant_starts_with_the_default_business_categories() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let (status, page) = call(
        &app,
        Method::GET,
        &format!("/api/v1/tenants/{t}/categories?limit=200"),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for expected in [
        "Revenue",
        "Payroll",
        "Rent",
        "Software",
        "Travel",
        "Meals",
        "Office",
        "Marketing",
        "Taxes",
        "Bank fees",
        "Utilities",
        "Insurance",
        "Professional services",
        "Equipment",
        "Transfers",
        "Uncategorised income",
        "Uncategorised expense",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
}

#[tokio::test]
async fn accounts_are_opened_with_a_checked_iban_and_archived_or_deleted() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let accounts = format!("/api/v1/tenants/{t}/accounts");
    for (iban, why) in [
        ("DE89 3704 0044 0532 0130 01", "check digits"),
        ("DE89 3704 0044 0532 0130", "22 characters"),
        ("not an iban", "15 to 34"),
    ] {
        let body =
            json!({"name": "Operating", "kind": "checking", "currency": "EUR", "iban": iban});
        let resp = app
            .authed(Method::POST, &accounts, &ada)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "iban");
        assert!(problem.to_string().contains(why), "{iban}: {problem}");
    }
    let body = json!({"name": "Operating", "kind": "credit", "currency": "JPY", "opening_balance": 5000, "iban": "gb82 west 1234 5698 7654 32"});
    let (status, account) = call(&app, Method::POST, &accounts, &ada, Some(body)).await;
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["iban"], "GB82WEST12345698765432");
    assert_eq!(
        (
            account["balance"].as_i64(),
            account["pending_balance"].as_i64()
        ),
        (Some(5000), Some(5000))
    );
    assert_eq!(account["currency"], "JPY");
    // A fraction or a float is no amount.
    for opening in [json!(1.5), json!("12.00")] {
        let body =
            json!({"name": "X", "kind": "cash", "currency": "EUR", "opening_balance": opening});
        let resp = app
            .authed(Method::POST, &accounts, &ada)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 422, "validation_failed").await;
    }
    let one = format!("{accounts}/{}", account["id"].as_str().unwrap());
    let (status, archived) = call(
        &app,
        Method::PATCH,
        &one,
        &ada,
        Some(json!({"archived": true, "iban": null})),
    )
    .await;
    assert_eq!(status, 200, "{archived}");
    assert!(archived["archived_at"].is_string() && archived["iban"].is_null());
    let stale = app
        .authed(Method::PATCH, &one, &ada)
        .header("If-Match", "\"1\"")
        .json(&json!({"name": "Y"}))
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412, "precondition_failed").await;
    let (status, series) = call(
        &app,
        Method::GET,
        &format!("{one}/balances?from=2026-01-01&to=2026-01-10"),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series.as_array().unwrap().len(), 10);
    assert_eq!(series[9]["balance"], 5000);
    let (status, _) = call(&app, Method::DELETE, &one, &ada, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&app, Method::GET, &one, &ada, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn categories_keep_two_levels_and_move_their_use_when_deleted() {
    let app = TestApp::spawn().await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let categories = format!("/api/v1/tenants/{t}/categories");
    let (_, top) = call(
        &app,
        Method::POST,
        &categories,
        &ada,
        Some(json!({"name": "Research", "kind": "expense"})),
    )
    .await;
    let top_id = top["id"].as_str().unwrap().to_string();
    let (status, lab) = call(
        &app,
        Method::POST,
        &categories,
        &ada,
        Some(json!({"name": "Lab", "kind": "expense", "parent_id": top_id})),
    )
    .await;
    assert_eq!(status, 201, "{lab}");
    let resp = app
        .authed(Method::POST, &categories, &ada)
        .json(&json!({"name": "Benches", "kind": "expense", "parent_id": lab["id"]}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "parent_id");
    let resp = app
        .authed(Method::POST, &categories, &ada)
        .json(&json!({"name": "research", "kind": "expense"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "validation_failed").await;
    let resp = app
        .authed(Method::DELETE, &format!("{categories}/{top_id}"), &ada)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "category_in_use").await;
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("{categories}/{}", lab["id"].as_str().unwrap()),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, other) = call(
        &app,
        Method::POST,
        &categories,
        &ada,
        Some(json!({"name": "Other", "kind": "expense"})),
    )
    .await;
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!(
            "{categories}/{top_id}?reassign_to={}",
            other["id"].as_str().unwrap()
        ),
        &ada,
        None,
    )
    .await;
    assert_eq!(status, 204);
}

struct Books {
    ada: String,
    t: kernel::TenantId,
    account: String,
    rent: String,
    software: String,
}

async fn books(app: &TestApp) -> Books {
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let body = json!({"name": "Operating", "kind": "checking", "currency": "EUR", "opening_balance": 100_000, "opening_date": "2026-01-01"});
    let (_, account) = call(
        app,
        Method::POST,
        &format!("/api/v1/tenants/{t}/accounts"),
        &ada,
        Some(body),
    )
    .await;
    let (_, cats) = call(
        app,
        Method::GET,
        &format!("/api/v1/tenants/{t}/categories?limit=200"),
        &ada,
        None,
    )
    .await;
    let id_of = |name: &str| {
        cats["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    Books {
        account: account["id"].as_str().unwrap().to_string(),
        rent: id_of("Rent"),
        software: id_of("Software"),
        ada,
        t,
    }
}

impl Books {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}/{rest}", self.t)
    }

    async fn enter(&self, app: &TestApp, body: Value) -> (u16, Value) {
        let mut body = body;
        body["account_id"] = json!(self.account);
        call(
            app,
            Method::POST,
            &self.path("transactions"),
            &self.ada,
            Some(body),
        )
        .await
    }

    async fn account(&self, app: &TestApp) -> Value {
        call(
            app,
            Method::GET,
            &self.path(&format!("accounts/{}", self.account)),
            &self.ada,
            None,
        )
        .await
        .1
    }
}

#[tokio::test]
async fn transactions_move_the_balances_in_the_same_transaction_and_leave_them_when_deleted() {
    let app = TestApp::spawn().await;
    let b = books(&app).await;
    let (status, rent) = b.enter(&app, json!({"date": "2026-02-01", "amount": -120_000, "merchant": "Landlord GmbH", "category_id": b.rent})).await;
    assert_eq!(status, 201, "{rent}");
    assert_eq!(rent["categorization"]["source"], "person");
    let (status, _) = b.enter(&app, json!({"date": "2026-02-03", "amount": 50_000, "status": "pending", "description": "Invoice 7"})).await;
    assert_eq!(status, 201);
    let account = b.account(&app).await;
    assert_eq!(
        (
            account["balance"].as_i64(),
            account["pending_balance"].as_i64()
        ),
        (Some(-20_000), Some(30_000))
    );
    let (_, series) = call(
        &app,
        Method::GET,
        &b.path(&format!(
            "accounts/{}/balances?from=2026-01-31&to=2026-02-03",
            b.account
        )),
        &b.ada,
        None,
    )
    .await;
    let balances: Vec<(i64, i64)> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["balance"].as_i64().unwrap(),
                d["pending_balance"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        balances,
        [
            (100_000, 100_000),
            (-20_000, -20_000),
            (-20_000, -20_000),
            (-20_000, 30_000)
        ]
    );

    // An account with transactions is kept: archive it instead.
    let resp = app
        .authed(
            Method::DELETE,
            &b.path(&format!("accounts/{}", b.account)),
            &b.ada,
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "account_in_use").await;

    let (status, _) = call(
        &app,
        Method::DELETE,
        &b.path(&format!("transactions/{}", rent["id"].as_str().unwrap())),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let account = b.account(&app).await;
    assert_eq!(
        (
            account["balance"].as_i64(),
            account["pending_balance"].as_i64()
        ),
        (Some(100_000), Some(150_000))
    );
    let (status, _) = call(
        &app,
        Method::GET,
        &b.path(&format!("transactions/{}", rent["id"].as_str().unwrap())),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let resp = app
        .authed(
            Method::DELETE,
            &b.path(&format!("accounts/{}", b.account)),
            &b.ada,
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "account_in_use").await;
}

#[tokio::test]
async fn bad_amounts_splits_and_currencies_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let b = books(&app).await;
    let cases = [
        (json!({"date": "2026-02-01", "amount": 12.5}), "amount"),
        (json!({"date": "2026-02-01", "amount": "-100"}), "amount"),
        (
            json!({"date": "2026-02-01", "amount": -100, "currency": "USD"}),
            "currency",
        ),
        (
            json!({"date": "2026-02-01", "amount": -100, "splits": [
            {"category_id": b.rent, "amount": -60}, {"category_id": b.software, "amount": -30}]}),
            "splits",
        ),
        (
            json!({"date": "2026-02-01", "amount": -100, "splits": [
            {"category_id": b.rent, "amount": -160}, {"category_id": b.software, "amount": 60}]}),
            "splits[1].amount",
        ),
        (
            json!({"date": "2026-02-01", "amount": -100, "category_id": b.rent, "splits": [
            {"category_id": b.rent, "amount": -60}, {"category_id": b.software, "amount": -40}]}),
            "category_id",
        ),
        (
            json!({"date": "2026-02-01", "amount": -100, "category_id": uuid::Uuid::now_v7()}),
            "category_id",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = b.enter(&app, body.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("validation_failed")),
            "{body}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let account = b.account(&app).await;
    assert_eq!(account["balance"], 100_000);
    let (_, list) = call(&app, Method::GET, &b.path("transactions"), &b.ada, None).await;
    assert_eq!(list["data"], json!([]));

    let (status, split) = b.enter(&app, json!({"date": "2026-02-01", "amount": -100, "splits": [
        {"category_id": b.rent, "amount": -60, "memo": "office"}, {"category_id": b.software, "amount": -40}]})).await;
    assert_eq!(status, 201, "{split}");
    assert!(split["category_id"].is_null());
    assert_eq!(split["splits"].as_array().unwrap().len(), 2);
    // A list by category finds a transaction through its splits.
    let (_, by_software) = call(
        &app,
        Method::GET,
        &b.path(&format!("transactions?category_id={}", b.software)),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(by_software["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn search_finds_words_and_beginnings_in_any_case_and_accents() {
    let app = TestApp::spawn().await;
    let b = books(&app).await;
    for (merchant, description, date) in [
        ("Café Müller", "CARD PAYMENT REF123", "2026-03-01"),
        ("Amazon Web Services", "AWS invoice March", "2026-03-02"),
        ("Amazon Marketplace", "Office chair", "2026-03-03"),
    ] {
        let (status, _) = b.enter(&app, json!({"date": date, "amount": -1000, "merchant": merchant, "description": description})).await;
        assert_eq!(status, 201);
    }
    let find = |q: &'static str| {
        let path = b.path(&format!("transactions?q={}", urlencoding(q)));
        let (app, ada) = (&app, b.ada.clone());
        async move {
            let (status, list) = call(app, Method::GET, &path, &ada, None).await;
            assert_eq!(status, 200, "{q}: {list}");
            list["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["merchant"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find("cafe").await, ["Café Müller"]);
    assert_eq!(find("MULLER").await, ["Café Müller"]);
    assert_eq!(
        find("amaz").await,
        ["Amazon Marketplace", "Amazon Web Services"]
    );
    assert_eq!(find("amazon chair").await, ["Amazon Marketplace"]);
    assert_eq!(find("am se").await, ["Amazon Web Services"]);
    assert!(find("nothing").await.is_empty());
    assert!(
        find("ref123").await.is_empty(),
        "reference numbers are not words"
    );
    let resp = app
        .authed(Method::GET, &b.path("transactions?q=a"), &b.ada)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "validation_failed").await;
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_persons_edit_locks_the_field_and_moves_balances_and_search() {
    let app = TestApp::spawn().await;
    let b = books(&app).await;
    let (_, t) = b
        .enter(
            &app,
            json!({"date": "2026-02-01", "amount": -5000, "merchant": "Githb"}),
        )
        .await;
    let one = b.path(&format!("transactions/{}", t["id"].as_str().unwrap()));
    let patch = json!({"merchant": "GitHub", "category_id": b.software, "amount": -7000, "date": "2026-02-05", "tags": ["dev", "dev"]});
    let resp = app
        .authed(Method::PATCH, &one, &b.ada)
        .header("If-Match", format!("\"{}\"", t["version"]))
        .json(&patch)
        .send()
        .await
        .unwrap();
    let (status, _, edited) = parts(resp).await;
    assert_eq!(status, 200, "{edited}");
    let mut locked: Vec<&str> = edited["locked_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    locked.sort();
    assert_eq!(locked, ["category", "date", "merchant", "tags"]);
    assert_eq!(edited["tags"], json!(["dev"]));
    assert_eq!(edited["categorization"]["source"], "person");
    assert_eq!(b.account(&app).await["balance"], 93_000);
    let (_, found) = call(
        &app,
        Method::GET,
        &b.path("transactions?q=github"),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    let (_, old) = call(
        &app,
        Method::GET,
        &b.path("transactions?q=githb"),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(old["data"], json!([]));
    let stale = app
        .authed(Method::PATCH, &one, &b.ada)
        .header("If-Match", format!("\"{}\"", t["version"]))
        .json(&json!({"notes": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(stale, 412, "precondition_failed").await;
}

#[tokio::test]
async fn transfers_move_money_between_own_accounts_in_one_currency_and_never_count_as_spending() {
    let app = TestApp::spawn().await;
    let b = books(&app).await;
    let open = |name: &str, currency: &str| {
        let body = json!({"name": name, "kind": "savings", "currency": currency});
        let (app, path, ada) = (&app, b.path("accounts"), b.ada.clone());
        async move {
            call(app, Method::POST, &path, &ada, Some(body)).await.1["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let savings = open("Savings", "EUR").await;
    let dollars = open("Dollars", "USD").await;
    let body = json!({"from_account_id": b.account, "to_account_id": savings, "amount": 25_000, "date": "2026-02-10", "description": "Reserve"});
    let (status, transfer) =
        call(&app, Method::POST, &b.path("transfers"), &b.ada, Some(body)).await;
    assert_eq!(status, 201, "{transfer}");
    assert_eq!(transfer["from"]["amount"], -25_000);
    assert_eq!(transfer["to"]["amount"], 25_000);
    assert_eq!(transfer["from"]["transfer_id"], transfer["transfer_id"]);
    assert_eq!(b.account(&app).await["balance"], 75_000);
    let (_, s) = call(
        &app,
        Method::GET,
        &b.path(&format!("accounts/{savings}")),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(s["balance"], 25_000);

    let across = json!({"from_account_id": b.account, "to_account_id": dollars, "amount": 100, "date": "2026-02-10"});
    let (status, problem) = call(
        &app,
        Method::POST,
        &b.path("transfers"),
        &b.ada,
        Some(across),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("to_account_id")),
        "{problem}"
    );
    let (_, d) = call(
        &app,
        Method::GET,
        &b.path(&format!("accounts/{dollars}")),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(d["balance"], 0, "a refused transfer moves nothing");

    let (_, spending) = call(
        &app,
        Method::GET,
        &b.path("transactions?include_transfers=false"),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(spending["data"], json!([]));

    // Two rows entered on their own become one transfer.
    let (_, out) = b
        .enter(&app, json!({"date": "2026-02-11", "amount": -700}))
        .await;
    let mut body = json!({"account_id": savings, "date": "2026-02-12", "amount": 700});
    let (_, inn) = call(
        &app,
        Method::POST,
        &b.path("transactions"),
        &b.ada,
        Some(body.take()),
    )
    .await;
    let (_, same_account) = b
        .enter(&app, json!({"date": "2026-02-11", "amount": 700}))
        .await;
    let link = |id: &Value, other: &Value| {
        let path = b.path(&format!(
            "transactions/{}/link-transfer",
            id.as_str().unwrap()
        ));
        let body = json!({"counterpart_id": other});
        let (app, ada) = (&app, b.ada.clone());
        async move { call(app, Method::POST, &path, &ada, Some(body)).await }
    };
    let (status, problem) = link(&out["id"], &same_account["id"]).await;
    assert_eq!(status, 422, "{problem}");
    let (status, linked) = link(&out["id"], &inn["id"]).await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(linked["from"]["id"], out["id"]);
    let (status, _) = link(&out["id"], &same_account["id"]).await;
    assert_eq!(status, 422, "a leg is linked once");

    // One leg's amount cannot change alone; deleting a leg deletes the transfer.
    let leg = b.path(&format!(
        "transactions/{}",
        transfer["from"]["id"].as_str().unwrap()
    ));
    let (status, problem) = call(
        &app,
        Method::PATCH,
        &leg,
        &b.ada,
        Some(json!({"amount": -1})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("amount"))
    );
    let (status, _) = call(&app, Method::DELETE, &leg, &b.ada, None).await;
    assert_eq!(status, 204);
    let other = b.path(&format!(
        "transactions/{}",
        transfer["to"]["id"].as_str().unwrap()
    ));
    assert_eq!(call(&app, Method::GET, &other, &b.ada, None).await.0, 404);
    let (_, s) = call(
        &app,
        Method::GET,
        &b.path(&format!("accounts/{savings}")),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(
        s["balance"], 700,
        "only the linked pair's leg is left in savings"
    );
}

#[tokio::test]
async fn a_member_given_one_account_sees_only_it_on_every_path() {
    let app = TestApp::spawn().await;
    let b = books(&app).await;
    let body = json!({"name": "Payroll", "kind": "checking", "currency": "EUR"});
    let (_, payroll) = call(&app, Method::POST, &b.path("accounts"), &b.ada, Some(body)).await;
    let payroll = payroll["id"].as_str().unwrap().to_string();
    let (_, mine) = b
        .enter(
            &app,
            json!({"date": "2026-02-01", "amount": -100, "merchant": "Stationery shop"}),
        )
        .await;
    let (_, hidden) = call(&app, Method::POST, &b.path("transactions"), &b.ada,
        Some(json!({"account_id": payroll, "date": "2026-02-01", "amount": -9_000, "merchant": "Salary shop"}))).await;
    let hidden = hidden["id"].as_str().unwrap().to_string();

    // Ada invites an accountant for the operating account only.
    let invite =
        json!({"email": "acc@example.com", "roles": ["accountant"], "account_ids": [b.account]});
    let (status, invitation) = call(
        &app,
        Method::POST,
        &b.path("invitations"),
        &b.ada,
        Some(invite),
    )
    .await;
    assert_eq!(status, 201, "{invitation}");
    assert_eq!(invitation["account_ids"], json!([b.account]));
    let token = testkit::seed::mailed_token(&app.kernel_db, "acc@example.com", "invitation").await;
    let (acc, acc_id) = app.new_user("acc@example.com").await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/invitations/accept",
        &acc,
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(status, 200);

    let (_, accounts) = call(&app, Method::GET, &b.path("accounts"), &acc, None).await;
    let ids: Vec<&str> = accounts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.account.as_str()]);
    for path in [
        format!("accounts/{payroll}"),
        format!("accounts/{payroll}/balances"),
        format!("transactions/{hidden}"),
    ] {
        let (status, body) = call(&app, Method::GET, &b.path(&path), &acc, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    for query in [
        "transactions",
        "transactions?q=shop",
        &format!("transactions?account_id={payroll}"),
    ] {
        let (_, list) = call(&app, Method::GET, &b.path(query), &acc, None).await;
        let found: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert!(!found.contains(&hidden.as_str()), "{query}: {list}");
    }
    let (_, list) = call(
        &app,
        Method::GET,
        &b.path("transactions?q=shop"),
        &acc,
        None,
    )
    .await;
    assert_eq!(list["data"][0]["id"], mine["id"]);
    let csv = app
        .authed(Method::GET, &b.path("transactions/export"), &acc)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(mine["id"].as_str().unwrap()) && !csv.contains(&hidden),
        "{csv}"
    );
    let (status, _) = call(
        &app,
        Method::PATCH,
        &b.path(&format!("transactions/{hidden}")),
        &acc,
        Some(json!({"notes": "x"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::DELETE,
        &b.path(&format!("transactions/{hidden}")),
        &acc,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, problem) = call(
        &app,
        Method::POST,
        &b.path("transactions"),
        &acc,
        Some(json!({"account_id": payroll, "date": "2026-02-02", "amount": -1})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("account_id"))
    );
    let (_, owner_view) = call(
        &app,
        Method::GET,
        &b.path(&format!("accounts/{payroll}")),
        &b.ada,
        None,
    )
    .await;
    assert_eq!(
        owner_view["balance"], -9_000,
        "nothing the accountant tried moved it"
    );

    // Ada makes her an admin of the same one account; she cannot hand out the other one.
    let member = b.path(&format!("members/{acc_id}"));
    let (status, body) = call(
        &app,
        Method::PATCH,
        &member,
        &b.ada,
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["account_ids"],
        json!([b.account]),
        "roles change, the scope stays"
    );
    let (status, problem) = call(
        &app,
        Method::POST,
        &b.path("api-keys"),
        &acc,
        Some(json!({"name": "k", "roles": ["viewer"], "account_ids": [payroll]})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("account_ids")),
        "{problem}"
    );
    let (status, key) = call(
        &app,
        Method::POST,
        &b.path("api-keys"),
        &acc,
        Some(json!({"name": "k", "roles": ["viewer"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(
        key["account_ids"],
        json!([b.account]),
        "a key gets no more than its creator sees"
    );
    let (_, by_key) = call(
        &app,
        Method::GET,
        &b.path("accounts"),
        key["secret"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(by_key["data"].as_array().unwrap().len(), 1);

    // A category used only in the account she cannot see is in use all the same.
    let (_, bonus) = call(
        &app,
        Method::POST,
        &b.path("categories"),
        &b.ada,
        Some(json!({"name": "Bonuses", "kind": "expense"})),
    )
    .await;
    let bonus = bonus["id"].as_str().unwrap().to_string();
    let (status, _) = call(&app, Method::POST, &b.path("transactions"), &b.ada,
        Some(json!({"account_id": payroll, "date": "2026-02-03", "amount": -500, "category_id": bonus}))).await;
    assert_eq!(status, 201);
    let resp = app
        .authed(
            Method::DELETE,
            &b.path(&format!("categories/{bonus}")),
            &acc,
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "category_in_use").await;

    // Every account again.
    let (status, body) = call(
        &app,
        Method::PATCH,
        &member,
        &b.ada,
        Some(json!({"roles": ["accountant"], "account_ids": null})),
    )
    .await;
    assert_eq!((status, body["account_ids"].clone()), (200, Value::Null));
    let (_, accounts) = call(&app, Method::GET, &b.path("accounts"), &acc, None).await;
    assert_eq!(accounts["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_export_streams_every_matching_row_as_csv_and_is_audited() {
    let app = TestApp::spawn().await;
    let b = books(&app).await;
    for i in 0..509 {
        let day = 1 + i % 28;
        let (status, _) = b.enter(&app, json!({"date": format!("2026-03-{day:02}"), "amount": -(i as i64) - 1, "merchant": "Coffee, \"the good one\""})).await;
        assert_eq!(status, 201);
    }
    let (_, split) = b.enter(&app, json!({"date": "2026-04-01", "amount": -1_050, "merchant": "=HYPERLINK(\"evil\")", "splits": [
        {"category_id": b.rent, "amount": -1_000, "memo": "desk"}, {"category_id": b.software, "amount": -50}]})).await;
    let resp = app
        .authed(
            Method::GET,
            &b.path("transactions/export?format=csv"),
            &b.ada,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("row_type,id,account_id,date"));
    let transactions = lines
        .iter()
        .filter(|l| l.starts_with("transaction,"))
        .count();
    let splits: Vec<&&str> = lines.iter().filter(|l| l.starts_with("split,")).collect();
    assert_eq!(transactions, 510, "every row, past the batch size");
    assert_eq!(splits.len(), 2);
    assert!(
        splits
            .iter()
            .all(|l| l.contains(split["id"].as_str().unwrap()))
    );
    assert!(
        csv.contains(",-10.50,EUR,") && csv.contains(",-0.01,EUR,"),
        "decimals in the currency's exponent"
    );
    assert!(
        csv.contains("\"Coffee, \"\"the good one\"\"\""),
        "RFC 4180 quoting"
    );
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"evil\"\")\""),
        "no formula runs in a spreadsheet"
    );

    // The export's rows are the list's: the same filters, the same count.
    let (_, list) = call(
        &app,
        Method::GET,
        &b.path("transactions?min_amount=-10&limit=200"),
        &b.ada,
        None,
    )
    .await;
    let resp = app
        .authed(
            Method::GET,
            &b.path("transactions/export?min_amount=-10"),
            &b.ada,
        )
        .send()
        .await
        .unwrap();
    let filtered = resp.text().await.unwrap();
    let exported = filtered
        .split("\r\n")
        .filter(|l| l.starts_with("transaction,"))
        .count();
    assert_eq!(exported, list["data"].as_array().unwrap().len());
    let (_, events) = call(
        &app,
        Method::GET,
        &b.path("events?type=transaction.exported"),
        &b.ada,
        None,
    )
    .await;
    let counts: Vec<i64> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts.len(), 2);
    assert!(counts.contains(&510) && counts.contains(&(exported as i64)));
    let resp = app
        .authed(Method::GET, &b.path("transactions/export?q=a"), &b.ada)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "validation_failed").await;
}
