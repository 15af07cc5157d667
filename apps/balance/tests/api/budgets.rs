//! Budgets over HTTP: what a period counts (subcategories, split parts, refunds, another
//! currency at its day's rate, never a transfer leg), each threshold alerted once with a
//! hover that does not repeat and a correction that re-arms, rollover, "today" in a
//! non-UTC time zone at a period boundary, and account scope.

use chrono::NaiveDate;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, parts};

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

struct Books {
    app: TestApp,
    ada: String,
    tenant: kernel::TenantId,
}

impl Books {
    async fn open(vars: &[(&str, &str)]) -> Books {
        let app = TestApp::spawn_with(vars).await;
        balance::platform::seed(&app.db.owner_url).await.unwrap();
        let (ada, _) = app.new_user("ada@example.com").await;
        let tenant = app.create_tenant(&ada, "Acme").await;
        Books { app, ada, tenant }
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}/{rest}", self.tenant)
    }

    async fn post(&self, rest: &str, body: Value) -> Value {
        let (status, got) = call(
            &self.app,
            &self.ada,
            Method::POST,
            &self.path(rest),
            Some(body),
        )
        .await;
        assert!((200..300).contains(&status), "POST {rest}: {status} {got}");
        got
    }

    async fn get(&self, rest: &str) -> Value {
        let (status, got) = call(&self.app, &self.ada, Method::GET, &self.path(rest), None).await;
        assert_eq!(status, 200, "GET {rest}: {got}");
        got
    }

    async fn account(&self, name: &str, currency: &str) -> String {
        let a = self
            .post(
                "accounts",
                json!({"name": name, "kind": "checking", "currency": currency}),
            )
            .await;
        a["id"].as_str().unwrap().to_string()
    }

    async fn category(&self, name: &str, kind: &str, parent: Option<&str>) -> String {
        let c = self
            .post(
                "categories",
                json!({"name": name, "kind": kind, "parent_id": parent}),
            )
            .await;
        c["id"].as_str().unwrap().to_string()
    }

    async fn spend(
        &self,
        account: &str,
        date: &str,
        amount: i64,
        category: Option<&str>,
    ) -> String {
        let t = self
            .post("transactions", json!({"account_id": account, "date": date, "amount": amount, "description": "x", "category_id": category}))
            .await;
        t["id"].as_str().unwrap().to_string()
    }

    async fn events(&self, kind: &str) -> Vec<Value> {
        self.get(&format!("events?type={kind}&limit=200")).await["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn today(&self) -> NaiveDate {
        let mut tx = kernel::SystemTx::begin(&self.app.kernel_db, kernel::Actor::System)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT (now() AT TIME ZONE time_zone)::date FROM tenants WHERE id = $1")
            .bind(self.tenant)
            .fetch_one(tx.conn())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_period_counts_subcategories_split_parts_refunds_and_foreign_spending_but_never_transfers()
 {
    let b = Books::open(&[]).await;
    let eur = b.account("Operating", "EUR").await;
    let reserve = b.account("Reserve", "EUR").await;
    let usd = b.account("Card", "USD").await;
    let travel = b.category("Trips", "expense", None).await;
    let flights = b.category("Airfare", "expense", Some(&travel)).await;
    let food = b.category("Food", "expense", None).await;
    let salary = b.category("Payroll in", "income", None).await;
    b.spend(&eur, "2026-10-05", -10_000, Some(&travel)).await;
    b.spend(&eur, "2026-10-06", -5_000, Some(&flights)).await;
    // 111.72 USD on 2026-10-30 at 1.1172 USD per EUR: exactly 100.00 EUR.
    b.spend(&usd, "2026-10-30", -11_172, Some(&travel)).await;
    // A refund reduces what was spent.
    b.spend(&eur, "2026-10-07", 2_000, Some(&travel)).await;
    // A split: 30.00 travel, 50.00 food.
    b.post(
        "transactions",
        json!({"account_id": eur, "date": "2026-10-08", "amount": -8_000, "description": "trip",
               "splits": [{"category_id": travel, "amount": -3_000}, {"category_id": food, "amount": -5_000}]}),
    )
    .await;
    // Never spending: a transfer between own accounts, income, next month's purchase.
    b.post("transfers", json!({"from_account_id": eur, "to_account_id": reserve, "amount": 20_000, "date": "2026-10-09", "description": "to reserve"})).await;
    b.spend(&eur, "2026-10-10", 100_000, Some(&salary)).await;
    b.spend(&eur, "2026-11-01", -7_000, Some(&travel)).await;

    let travel_budget = b
        .post("budgets", json!({"name": "Travel", "category_id": travel, "period": "monthly", "start_date": "2026-10-01", "amount": 50_000, "currency": "EUR"}))
        .await;
    assert_eq!(travel_budget["thresholds"], json!([80, 100, 120]));
    let id = travel_budget["id"].as_str().unwrap();
    let p = b
        .get(&format!("budgets/{id}/progress?period=2026-10-15"))
        .await;
    // 100 + 50 + 100 (converted) − 20 + 30 = 260.00 EUR.
    assert_eq!(
        (
            p["spent"].as_i64(),
            p["remaining"].as_i64(),
            p["converted"].as_i64()
        ),
        (Some(26_000), Some(24_000), Some(1)),
        "{p}"
    );
    assert_eq!(
        (p["period_start"].as_str(), p["period_end"].as_str()),
        (Some("2026-10-01"), Some("2026-10-31"))
    );
    assert_eq!(p["percent"], 52.0);
    // Without its subcategories: the flight is left out.
    let own = b
        .post("budgets", json!({"name": "Travel only", "category_id": travel, "include_children": false, "period": "monthly", "start_date": "2026-10-01", "amount": 50_000, "currency": "EUR"}))
        .await;
    let p = b
        .get(&format!(
            "budgets/{}/progress?period=2026-10-15",
            own["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(p["spent"], 21_000);
    // All spending, in dollars: the expense categories and nothing else, each day's sum at
    // that day's rate.
    let all = b
        .post("budgets", json!({"name": "Everything", "period": "monthly", "start_date": "2026-10-01", "amount": 100_000, "currency": "USD"}))
        .await;
    let p = b
        .get(&format!(
            "budgets/{}/progress?period=2026-10-15",
            all["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(p["converted"], 5, "{p}");
    let expected_eur_days = [
        ("2026-10-05", -10_000),
        ("2026-10-06", -5_000),
        ("2026-10-07", 2_000),
        ("2026-10-08", -8_000),
    ];
    let mut expected = 11_172i64;
    let mut tx = kernel::SystemTx::begin(&b.app.kernel_db, kernel::Actor::System)
        .await
        .unwrap();
    for (day, amount) in expected_eur_days {
        let c = b
            .app
            .platform
            .fx
            .convert(
                &mut tx,
                amount,
                kernel::Currency::parse("EUR").unwrap(),
                kernel::Currency::parse("USD").unwrap(),
                day.parse().unwrap(),
            )
            .await
            .unwrap();
        expected -= c.amount;
    }
    assert_eq!(p["spent"].as_i64(), Some(expected), "{p}");

    // Bad settings change nothing.
    for (bad, field) in [
        (
            json!({"name": "x", "period": "daily", "amount": 1}),
            "period",
        ),
        (
            json!({"name": "x", "period": "monthly", "amount": 0}),
            "amount",
        ),
        (
            json!({"name": "x", "period": "monthly", "amount": 1, "category_id": salary}),
            "category_id",
        ),
        (
            json!({"name": "x", "period": "monthly", "amount": 1, "thresholds": [100, 80]}),
            "thresholds",
        ),
        (
            json!({"name": "x", "period": "monthly", "amount": 1, "account_ids": [uuid::Uuid::now_v7()]}),
            "account_ids",
        ),
    ] {
        let (status, problem) =
            call(&b.app, &b.ada, Method::POST, &b.path("budgets"), Some(bad)).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_eq!(b.get("budgets").await["data"].as_array().unwrap().len(), 3);
    // A foreign purchase after the last known rate: said so, never a silent zero.
    b.spend(&usd, "2026-11-20", -1_000, Some(&travel)).await;
    let (status, problem) = call(
        &b.app,
        &b.ada,
        Method::GET,
        &b.path(&format!("budgets/{id}/progress?period=2026-11-20")),
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("fx_rate_missing")),
        "{problem}"
    );
}

#[tokio::test]
async fn each_threshold_alerts_once_a_hover_does_not_repeat_and_a_correction_re_arms() {
    let b = Books::open(&[]).await;
    let eur = b.account("Operating", "EUR").await;
    let food = b.category("Food", "expense", None).await;
    let today = b.today().await;
    let start = today.format("%Y-%m-01").to_string();
    let budget = b
        .post("budgets", json!({"name": "Food", "category_id": food, "period": "monthly", "start_date": start, "amount": 10_000, "thresholds": [80, 100]}))
        .await;
    assert_eq!(budget["currency"], "EUR", "the tenant's base currency");
    let id = budget["id"].as_str().unwrap().to_string();
    let day = today.to_string();
    let budgets = &b.app.platform.budgets;
    let crossed = || async { b.events("budget.threshold_crossed").await };

    b.spend(&eur, &day, -8_500, Some(&food)).await;
    assert_eq!(budgets.evaluate(b.tenant).await.unwrap(), 1);
    assert_eq!(budgets.evaluate(b.tenant).await.unwrap(), 0, "once");
    let twenty = b.spend(&eur, &day, -2_000, Some(&food)).await;
    assert_eq!(budgets.evaluate(b.tenant).await.unwrap(), 1, "100 % now");
    // Hover: a refund takes it under 100 %, a purchase over again: no second alert.
    b.spend(&eur, &day, 1_000, Some(&food)).await;
    assert_eq!(budgets.evaluate(b.tenant).await.unwrap(), 0);
    b.spend(&eur, &day, -1_000, Some(&food)).await;
    assert_eq!(
        budgets.evaluate(b.tenant).await.unwrap(),
        0,
        "a hover does not repeat"
    );
    let events = crossed().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["payload"]["threshold"], 100);
    assert_eq!(events[0]["payload"]["spent"], 10_500);
    // A correction: the 20.00 purchase was a mistake. Spending drops under 100 %: re-armed.
    let (status, _) = call(
        &b.app,
        &b.ada,
        Method::DELETE,
        &b.path(&format!("transactions/{twenty}")),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(budgets.evaluate(b.tenant).await.unwrap(), 0);
    let p = b.get(&format!("budgets/{id}/progress")).await;
    assert_eq!(p["spent"], 8_500);
    assert!(
        p["thresholds"][0]["crossed_at"].is_string() && p["thresholds"][1]["crossed_at"].is_null(),
        "{p}"
    );
    b.spend(&eur, &day, -2_000, Some(&food)).await;
    assert_eq!(
        budgets.evaluate(b.tenant).await.unwrap(),
        1,
        "crossed again after the correction"
    );
    assert_eq!(crossed().await.len(), 3);
    let p = b.get(&format!("budgets/{id}/progress")).await;
    assert_eq!(p["thresholds"][1]["spent_at_crossing"], 10_500, "{p}");
}

#[tokio::test]
async fn a_change_queues_one_evaluation_that_alerts_by_itself() {
    let app_vars: [(&str, &str); 0] = [];
    let app = TestApp::spawn_with_worker(&app_vars).await;
    let (ada, _) = app.new_user("ada@example.com").await;
    let t = app.create_tenant(&ada, "Acme").await;
    let path = |rest: &str| format!("/api/v1/tenants/{t}/{rest}");
    let (_, account) = call(
        &app,
        &ada,
        Method::POST,
        &path("accounts"),
        Some(json!({"name": "Cash", "kind": "cash", "currency": "EUR"})),
    )
    .await;
    let today = chrono::Utc::now().date_naive();
    let (status, budget) = call(
        &app,
        &ada,
        Method::POST,
        &path("budgets"),
        Some(json!({"name": "All", "period": "yearly", "start_date": "2026-01-01", "amount": 1_000, "thresholds": [50]})),
    )
    .await;
    assert_eq!(status, 201, "{budget}");
    // Several changes in a few seconds: one evaluation, one alert.
    for n in 0..3 {
        let (status, _) = call(&app, &ada, Method::POST, &path("transactions"),
            Some(json!({"account_id": account["id"], "date": today, "amount": -400 - n, "description": "spend"}))).await;
        assert_eq!(status, 201);
    }
    let events = testkit::eventually(std::time::Duration::from_secs(30), || async {
        let (_, events) = call(
            &app,
            &ada,
            Method::GET,
            &path("events?type=budget.threshold_crossed"),
            None,
        )
        .await;
        let list = events["data"].as_array().unwrap().clone();
        (!list.is_empty()).then_some(list)
    })
    .await
    .expect("the evaluation job alerted");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["source_agent"], "budgets");
}

#[tokio::test]
async fn rollover_carries_the_remainder_of_earlier_periods() {
    let b = Books::open(&[]).await;
    let eur = b.account("Operating", "EUR").await;
    let food = b.category("Food", "expense", None).await;
    let budget = b
        .post("budgets", json!({"name": "Food", "category_id": food, "period": "monthly", "start_date": "2026-08-01", "amount": 10_000, "rollover": true}))
        .await;
    b.spend(&eur, "2026-08-10", -6_000, Some(&food)).await;
    b.spend(&eur, "2026-09-10", -13_000, Some(&food)).await;
    b.spend(&eur, "2026-10-10", -1_000, Some(&food)).await;
    let id = budget["id"].as_str().unwrap();
    let p = b
        .get(&format!("budgets/{id}/progress?period=2026-10-31"))
        .await;
    // August left 40.00, September overspent 30.00: 10.00 carried.
    assert_eq!(
        (
            p["carried"].as_i64(),
            p["available"].as_i64(),
            p["remaining"].as_i64()
        ),
        (Some(1_000), Some(11_000), Some(10_000)),
        "{p}"
    );
    assert_eq!(
        p["projected"], 1_000,
        "a past period projects what it spent"
    );
    let p = b
        .get(&format!("budgets/{id}/progress?period=2026-08-01"))
        .await;
    assert_eq!(
        (p["carried"].as_i64(), p["spent"].as_i64()),
        (Some(0), Some(6_000))
    );
}

#[tokio::test]
async fn today_is_the_tenants_date_at_a_period_boundary() {
    let b = Books::open(&[]).await;
    // Of two zones 25 hours apart, at least one is on another date than UTC right now.
    let utc = chrono::Utc::now().date_naive();
    let mut chosen = None;
    for zone in ["Pacific/Pago_Pago", "Pacific/Kiritimati"] {
        let (status, tenant) = call(
            &b.app,
            &b.ada,
            Method::PATCH,
            &format!("/api/v1/tenants/{}", b.tenant),
            Some(json!({"time_zone": zone})),
        )
        .await;
        assert_eq!(
            (status, tenant["time_zone"].as_str()),
            (200, Some(zone)),
            "{tenant}"
        );
        let local = b.today().await;
        if local != utc {
            chosen = Some(local);
            break;
        }
    }
    let local = chosen.expect("one zone is on another date");
    // A weekly budget whose period begins on the later of the two dates.
    let later = local.max(utc);
    let budget = b
        .post(
            "budgets",
            json!({"name": "Week", "period": "weekly", "start_date": later, "amount": 10_000}),
        )
        .await;
    let p = b
        .get(&format!(
            "budgets/{}/progress",
            budget["id"].as_str().unwrap()
        ))
        .await;
    let expected = if local == later {
        later
    } else {
        later - chrono::Duration::days(7)
    };
    assert_eq!(
        p["period_start"],
        expected.to_string(),
        "the tenant's today ({local}), not UTC's ({utc})"
    );
    let (status, problem) = call(
        &b.app,
        &b.ada,
        Method::PATCH,
        &format!("/api/v1/tenants/{}", b.tenant),
        Some(json!({"time_zone": "Mars/Olympus"})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("time_zone")),
        "{problem}"
    );
}

#[tokio::test]
async fn a_member_confined_to_some_accounts_sees_only_budgets_over_them() {
    let b = Books::open(&[]).await;
    let ops = b.account("Operating", "EUR").await;
    let payroll = b.account("Payroll", "EUR").await;
    let food = b.category("Food", "expense", None).await;
    b.spend(&ops, "2026-10-05", -1_000, Some(&food)).await;
    b.spend(&payroll, "2026-10-05", -9_000, Some(&food)).await;
    let mine = b
        .post("budgets", json!({"name": "Ops food", "category_id": food, "account_ids": [ops], "period": "monthly", "start_date": "2026-10-01", "amount": 10_000}))
        .await;
    b.post("budgets", json!({"name": "All food", "category_id": food, "period": "monthly", "start_date": "2026-10-01", "amount": 10_000}))
        .await;
    b.post(
        "invitations",
        json!({"email": "acc@example.com", "roles": ["accountant"], "account_ids": [ops]}),
    )
    .await;
    let token =
        testkit::seed::mailed_token(&b.app.kernel_db, "acc@example.com", "invitation").await;
    let (acc, _) = b.app.new_user("acc@example.com").await;
    let (status, _) = call(
        &b.app,
        &acc,
        Method::POST,
        "/api/v1/invitations/accept",
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = call(&b.app, &acc, Method::GET, &b.path("budgets"), None).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Ops food"]);
    let (status, p) = call(
        &b.app,
        &acc,
        Method::GET,
        &b.path(&format!(
            "budgets/{}/progress?period=2026-10-05",
            mine["id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    assert_eq!((status, p["spent"].as_i64()), (200, Some(1_000)), "{p}");
    // A budget over every account, or over one they do not see, is not theirs to make.
    let (status, problem) = call(
        &b.app,
        &acc,
        Method::POST,
        &b.path("budgets"),
        Some(json!({"name": "x", "period": "monthly", "amount": 1})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("account_ids")),
        "{problem}"
    );
    let (status, _) = call(
        &b.app,
        &acc,
        Method::POST,
        &b.path("budgets"),
        Some(json!({"name": "x", "period": "monthly", "amount": 1, "account_ids": [payroll]})),
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn a_goal_fed_by_contributions_shows_its_pace_and_is_reached_once() {
    let b = Books::open(&[]).await;
    let eur = b.account("Operating", "EUR").await;
    let today = b.today().await;
    let in_five_months = today.checked_add_months(chrono::Months::new(5)).unwrap();
    let goal = b
        .post(
            "goals",
            json!({"name": "Laptop fund", "target_amount": 100_000, "target_date": in_five_months}),
        )
        .await;
    assert_eq!(
        (
            goal["currency"].as_str(),
            goal["progress"]["saved"].as_i64()
        ),
        (Some("EUR"), Some(0))
    );
    let id = goal["id"].as_str().unwrap();
    let ten_days_ago = (today - chrono::Duration::days(10)).to_string();
    let g = b
        .post(
            &format!("goals/{id}/contributions"),
            json!({"amount": 30_000, "date": ten_days_ago}),
        )
        .await;
    assert_eq!(g["progress"]["saved"], 30_000);
    // A transaction that put money aside counts by its amount.
    let moved = b.spend(&eur, &today.to_string(), -20_000, None).await;
    let g = b
        .post(
            &format!("goals/{id}/contributions"),
            json!({"transaction_id": moved, "date": today}),
        )
        .await;
    let p = &g["progress"];
    assert_eq!(
        (
            p["saved"].as_i64(),
            p["remaining"].as_i64(),
            p["percent"].as_f64()
        ),
        (Some(50_000), Some(50_000), Some(50.0)),
        "{g}"
    );
    // 500.00 more in 5 months: 100.00 a month; at 500.00 per 90 days, 90 days from now.
    assert_eq!(p["monthly_needed"], 10_000);
    assert_eq!(
        p["projected_completion"],
        (today + chrono::Duration::days(90)).to_string()
    );
    let (status, problem) = call(
        &b.app,
        &b.ada,
        Method::POST,
        &b.path(&format!("goals/{id}/contributions")),
        Some(json!({"transaction_id": moved})),
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("transaction_id")),
        "counted once: {problem}"
    );
    b.post(
        &format!("goals/{id}/contributions"),
        json!({"amount": 60_000}),
    )
    .await;
    let g = b
        .post(
            &format!("goals/{id}/contributions"),
            json!({"amount": 1_000}),
        )
        .await;
    assert!(g["reached_at"].is_string(), "{g}");
    assert!(g["progress"]["projected_completion"].is_null());
    let reached = b.events("goal.reached").await;
    assert_eq!(reached.len(), 1, "reached once");
    assert_eq!(reached[0]["payload"]["saved"], 110_000);
}

#[tokio::test]
async fn a_goal_fed_by_an_account_counts_its_balance_and_the_evaluation_marks_it_reached() {
    let b = Books::open(&[]).await;
    let savings = b.account("Savings", "EUR").await;
    let today = b.today().await;
    b.spend(
        &savings,
        &(today - chrono::Duration::days(100)).to_string(),
        30_000,
        None,
    )
    .await;
    b.spend(
        &savings,
        &(today - chrono::Duration::days(10)).to_string(),
        20_000,
        None,
    )
    .await;
    let goal = b
        .post(
            "goals",
            json!({"name": "Reserve", "target_amount": 60_000, "account_id": savings}),
        )
        .await;
    let p = &goal["progress"];
    assert_eq!(
        (
            p["saved"].as_i64(),
            p["saved_last_90_days"].as_i64(),
            p["monthly_needed"].is_null()
        ),
        (Some(50_000), Some(20_000), true),
        "{goal}"
    );
    // 100.00 to go at 200.00 per 90 days: 45 days.
    assert_eq!(
        p["projected_completion"],
        (today + chrono::Duration::days(45)).to_string()
    );
    let id = goal["id"].as_str().unwrap();
    let (status, _) = call(
        &b.app,
        &b.ada,
        Method::POST,
        &b.path(&format!("goals/{id}/contributions")),
        Some(json!({"amount": 100})),
    )
    .await;
    assert_eq!(status, 422, "an account-fed goal takes no contributions");
    b.spend(&savings, &today.to_string(), 15_000, None).await;
    b.app.platform.budgets.evaluate(b.tenant).await.unwrap();
    b.app.platform.budgets.evaluate(b.tenant).await.unwrap();
    assert_eq!(b.events("goal.reached").await.len(), 1);
    let g = b.get(&format!("goals/{id}")).await;
    assert!(g["reached_at"].is_string());
    assert_eq!(b.get("goals").await["data"].as_array().unwrap().len(), 1);
}
