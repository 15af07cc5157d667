//! Categorization over HTTP, with the in-process worker running the pipeline's jobs: a
//! rule decides an entered transaction and the transaction says why; a rule's preview
//! writes nothing and its apply is a job; a doubtful suggestion waits for a person, whose
//! decision can become a rule; refused requests change nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, parts};

struct Books {
    t: kernel::TenantId,
    ada: String,
    account: String,
}

impl Books {
    async fn open(app: &TestApp) -> Books {
        let (ada, _) = app.new_user("ada@example.com").await;
        let t = app.create_tenant(&ada, "Acme").await;
        let (_, _, account) = parts(
            app.authed(Method::POST, &format!("/api/v1/tenants/{t}/accounts"), &ada)
                .json(&json!({"name": "Operating", "kind": "checking", "currency": "EUR"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        Books {
            t,
            ada,
            account: account["id"].as_str().unwrap().to_string(),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/tenants/{}/{rest}", self.t)
    }

    async fn call(
        &self,
        app: &TestApp,
        method: Method,
        rest: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = app.authed(method, &self.path(rest), &self.ada);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (status, _, value) = parts(req.send().await.unwrap()).await;
        (status.as_u16(), value)
    }

    async fn category(&self, app: &TestApp, name: &str) -> String {
        let (_, list) = self
            .call(app, Method::GET, "categories?limit=200", None)
            .await;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no category {name}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn enter(
        &self,
        app: &TestApp,
        merchant: &str,
        amount: i64,
        category: Option<&str>,
    ) -> String {
        let mut body = json!({"account_id": self.account, "date": "2026-03-02",
            "amount": amount, "merchant": merchant, "description": "card payment"});
        if let Some(c) = category {
            body["category_id"] = json!(c);
        }
        let (status, t) = self
            .call(app, Method::POST, "transactions", Some(body))
            .await;
        assert_eq!(status, 201, "{t}");
        t["id"].as_str().unwrap().to_string()
    }

    /// The transaction's categorization once the pipeline has decided it.
    async fn decided(&self, app: &TestApp, id: &str) -> Value {
        for _ in 0..100 {
            let (status, e) = self
                .call(
                    app,
                    Method::GET,
                    &format!("transactions/{id}/categorization"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{e}");
            if !e["category_id"].is_null() || !e["approval"].is_null() {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the pipeline did not decide {id}");
    }
}

#[tokio::test]
async fn a_rule_categorises_an_entered_transaction_and_the_transaction_explains_why() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let b = Books::open(&app).await;
    let hosting = b.category(&app, "Hosting").await;
    let (status, rule) = b
        .call(
            &app,
            Method::POST,
            "rules",
            Some(json!({
                "name": "Cloud hosting",
                "conditions": {"items": [{"field": "merchant", "op": "contains", "value": "aws"}]},
                "actions": {"category_id": hosting, "tags": ["cloud"]},
            })),
        )
        .await;
    assert_eq!(status, 201, "{rule}");

    let id = b.enter(&app, "AWS EMEA", -12_000, None).await;
    let explained = b.decided(&app, &id).await;
    assert_eq!(explained["category_id"], json!(hosting));
    assert_eq!(explained["categorization"]["source"], "rule");
    assert_eq!(explained["categorization"]["rule_id"], rule["id"]);
    let words = explained["explanation"].as_str().unwrap();
    assert!(words.contains("Rule 'Cloud hosting' matched"), "{words}");
    assert!(words.contains("Hosting"), "{words}");
    let (_, t) = b
        .call(&app, Method::GET, &format!("transactions/{id}"), None)
        .await;
    assert_eq!(t["tags"], json!(["cloud"]));
    let (_, rule) = b
        .call(
            &app,
            Method::GET,
            &format!("rules/{}", rule["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(rule["hits"], 1);
    assert!(!rule["last_hit_at"].is_null());

    // A transaction entered with a category is the person's choice: nothing runs on it.
    let meals = b.category(&app, "Meals").await;
    let chosen = b
        .enter(&app, "AWS Summit catering", -4_000, Some(&meals))
        .await;
    let (_, e) = b
        .call(
            &app,
            Method::GET,
            &format!("transactions/{chosen}/categorization"),
            None,
        )
        .await;
    assert_eq!(e["category_id"], json!(meals));
    assert_eq!(e["categorization"]["source"], "person");
}

#[tokio::test]
async fn a_rule_preview_writes_nothing_and_applying_it_leaves_a_persons_choice() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let b = Books::open(&app).await;
    let meals = b.category(&app, "Meals").await;
    let travel = b.category(&app, "Local transport").await;
    // No rule yet: the first ride stays uncategorised (nothing alike in the history).
    let ride = b.enter(&app, "UBER *TRIP", -1_800, None).await;
    let eats = b.enter(&app, "UBER *EATS", -2_400, Some(&meals)).await;
    let draft = json!({
        "conditions": {"items": [{"field": "merchant", "op": "starts_with", "value": "uber"}]},
        "actions": {"category_id": travel},
    });
    let (status, preview) = b
        .call(
            &app,
            Method::POST,
            "rules/test",
            Some(json!({"rule": draft, "limit": 1})),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["matched"], 2);
    assert_eq!(preview["locked"], 1);
    assert_eq!(preview["data"].as_array().unwrap().len(), 1);
    let (_, rules) = b.call(&app, Method::GET, "rules", None).await;
    assert_eq!(rules["data"], json!([]), "a preview writes no rule");

    let mut rule = draft.clone();
    rule["name"] = json!("Rides");
    let (_, rule) = b.call(&app, Method::POST, "rules", Some(rule)).await;
    let (status, queued) = b
        .call(
            &app,
            Method::POST,
            &format!("rules/{}/apply", rule["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    assert!(queued["job_id"].is_string());
    // The ride may have waited for a person (the history has one Uber transaction, filed
    // under Meals) before the rule's run decided it.
    let mut explained = b.decided(&app, &ride).await;
    for _ in 0..100 {
        if !explained["category_id"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        explained = b.decided(&app, &ride).await;
    }
    assert_eq!(explained["category_id"], json!(travel), "{explained}");
    assert_eq!(explained["categorization"]["source"], "rule");
    assert!(
        explained["approval"].is_null(),
        "the rule settled the wait: {explained}"
    );
    let (_, e) = b
        .call(&app, Method::GET, &format!("transactions/{eats}"), None)
        .await;
    assert_eq!(
        e["category_id"],
        json!(meals),
        "a person's choice stays: {e}"
    );
}

#[tokio::test]
async fn a_doubtful_suggestion_waits_for_a_person_whose_decision_can_become_a_rule() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let b = Books::open(&app).await;
    let (_, settings) = b
        .call(&app, Method::GET, "categorization/settings", None)
        .await;
    assert_eq!(settings["approval_threshold"], 0.7);
    assert_eq!(settings["llm_configured"], false);
    let resp = app
        .authed(Method::PUT, &b.path("categorization/settings"), &b.ada)
        .header("If-Match", settings["version"].to_string())
        .json(&json!({"approval_threshold": 0.99, "llm_enabled": false}))
        .send()
        .await
        .unwrap();
    let (status, _, settings) = parts(resp).await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["approval_threshold"], 0.99);

    let software = b.category(&app, "Subscriptions").await;
    b.enter(&app, "GitHub", -900, Some(&software)).await;
    let first = b.enter(&app, "GitHub", -900, None).await;
    let second = b.enter(&app, "GitHub", -2_100, None).await;
    let waiting = b.decided(&app, &first).await;
    assert!(waiting["category_id"].is_null(), "{waiting}");
    let words = waiting["explanation"].as_str().unwrap();
    assert!(words.contains("Waiting for a person"), "{words}");
    assert!(words.contains("earlier transaction from GitHub"), "{words}");
    b.decided(&app, &second).await;

    let (_, list) = b.call(&app, Method::GET, "approvals", None).await;
    let approvals = list["data"].as_array().unwrap();
    assert_eq!(approvals.len(), 2, "{list}");
    let of_first = approvals
        .iter()
        .find(|a| a["transaction_id"] == json!(first))
        .unwrap();
    assert_eq!(of_first["category_id"], json!(software));
    assert_eq!(of_first["source"], "similarity");
    assert_eq!(of_first["transaction"]["merchant"], "GitHub");

    let (status, decided) = b
        .call(
            &app,
            Method::POST,
            &format!("approvals/{}/decision", of_first["id"].as_str().unwrap()),
            Some(json!({"action": "approve", "create_rule": true})),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["approval"]["status"], "approved");
    assert_eq!(
        decided["resolved"], 1,
        "the new rule decides the other GitHub one"
    );
    assert_eq!(decided["rule"]["conditions"]["items"][0]["value"], "GitHub");
    let (_, t) = b
        .call(&app, Method::GET, &format!("transactions/{first}"), None)
        .await;
    assert_eq!(t["category_id"], json!(software));
    assert_eq!(t["categorization"]["source"], "person");
    assert!(
        t["locked_fields"]
            .as_array()
            .unwrap()
            .contains(&json!("category"))
    );
    let (_, t) = b
        .call(&app, Method::GET, &format!("transactions/{second}"), None)
        .await;
    assert_eq!(t["categorization"]["source"], "rule");
    let (_, list) = b.call(&app, Method::GET, "approvals", None).await;
    assert_eq!(list["data"], json!([]));

    // Deciding again is refused.
    let resp = app
        .authed(
            Method::POST,
            &b.path(&format!(
                "approvals/{}/decision",
                of_first["id"].as_str().unwrap()
            )),
            &b.ada,
        )
        .json(&json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "approval_decided").await;
}

#[tokio::test]
async fn bad_rules_and_settings_are_refused_whole_and_write_nothing() {
    let app = TestApp::spawn().await;
    let b = Books::open(&app).await;
    let hosting = b.category(&app, "Hosting").await;
    let cases = [
        (
            json!({"name": "Bad pattern", "conditions": {"items": [{"field": "merchant", "op": "regex", "value": "(unclosed"}]},
                   "actions": {"category_id": hosting}}),
            "conditions.items[0].value",
        ),
        (
            json!({"name": "No operand", "conditions": {"items": [{"field": "amount", "op": "between"}]},
                   "actions": {"category_id": hosting}}),
            "conditions.items[0]",
        ),
        (
            json!({"name": "Does nothing", "conditions": {"items": [{"field": "merchant", "op": "contains", "value": "x"}]},
                   "actions": {}}),
            "actions",
        ),
        (
            json!({"name": "Foreign category", "conditions": {"items": [{"field": "merchant", "op": "contains", "value": "x"}]},
                   "actions": {"category_id": uuid::Uuid::now_v7()}}),
            "actions.category_id",
        ),
    ];
    for (body, field) in cases {
        let resp = app
            .authed(Method::POST, &b.path("rules"), &b.ada)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 422, "validation_failed").await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{body}: {problem}"
        );
    }
    let resp = app
        .authed(Method::PUT, &b.path("categorization/settings"), &b.ada)
        .json(&json!({"approval_threshold": 2, "llm_enabled": true}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "validation_failed").await;
    let (_, rules) = b.call(&app, Method::GET, "rules", None).await;
    assert_eq!(rules["data"], json!([]));
    let (_, settings) = b
        .call(&app, Method::GET, "categorization/settings", None)
        .await;
    assert_eq!(settings["approval_threshold"], 0.7);
}

#[tokio::test]
async fn a_rule_created_twice_with_one_idempotency_key_is_written_once() {
    let app = TestApp::spawn().await;
    let b = Books::open(&app).await;
    let hosting = b.category(&app, "Hosting").await;
    let body = json!({"name": "Cloud", "conditions": {"items": [{"field": "merchant", "op": "contains", "value": "aws"}]},
        "actions": {"category_id": hosting}});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = app
            .authed(Method::POST, &b.path("rules"), &b.ada)
            .header("Idempotency-Key", "rule-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, rule) = parts(resp).await;
        assert_eq!(status, 201, "{rule}");
        ids.push(rule["id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    let (_, rules) = b.call(&app, Method::GET, "rules", None).await;
    assert_eq!(rules["data"].as_array().unwrap().len(), 1);
}
