//! The LLM step against the stand-in: what it decides, what leaves the platform, the
//! per-merchant cache, the daily budget, and failures that are never fatal.

use std::{collections::BTreeSet, time::Duration};

use categorize::{
    ApprovalStatus, Categorizer, Run,
    llm::{LlmClient, LlmConfig},
};
use kernel::Secret;
use serde_json::Value;
use testkit::llm::{LlmMode, LlmStandIn};

use crate::{Env, day, new_tx};

async fn stand_in() -> LlmStandIn {
    let llm = LlmStandIn::start().await.unwrap();
    llm.answer_with(vec![
        ("hetzner".into(), "Software › Hosting".into()),
        ("figma".into(), "Software › Subscriptions".into()),
        ("notion".into(), "Software › Subscriptions".into()),
    ]);
    llm
}

fn with_llm(env: &Env, llm: &LlmStandIn, daily_calls: u32, timeout: Duration) -> Categorizer {
    let client = LlmClient::new(LlmConfig {
        base_url: llm.base_url(),
        api_key: Secret::new("sk-test".to_string()),
        model: "gpt-test".into(),
        timeout,
        daily_calls,
    })
    .unwrap();
    Categorizer::new(env.ledger.clone()).with_llm(client)
}

/// The user message of a request: what the model was shown of the tenant.
fn shown(request: &Value) -> Value {
    let content = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap()["content"]
        .as_str()
        .unwrap();
    serde_json::from_str(content).unwrap()
}

/// The names the pipeline offers: a child as "Parent › Child".
fn offered(env: &Env) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (parent, _, children) in ledger::domain::DEFAULT_CATEGORIES {
        names.insert(parent.to_string());
        for child in *children {
            names.insert(format!("{parent} › {child}"));
        }
    }
    assert_eq!(names.len(), env.categories.len());
    names
}

#[tokio::test]
async fn the_llm_files_what_nothing_else_decides_and_sees_only_what_it_needs() {
    let env = Env::new().await;
    let llm = stand_in().await;
    let categorizer = with_llm(&env, &llm, 2, Duration::from_secs(10));

    let mut new = new_tx(
        env.account,
        day(1),
        Some("Hetzner Online"),
        "Dedicated server AX41",
        -4_217,
    );
    new.notes = Some("Kundennummer vertraulich 77123".into());
    let first = env.enter(new).await.id;
    let summary = env.run_queued_with(&categorizer).await;
    assert_eq!(
        (summary[0].llm, summary[0].llm_calls),
        (1, 1),
        "{summary:?}"
    );
    let t = env.transaction(first).await;
    assert_eq!(t.category_id, Some(env.cat("Hosting")));
    let c = t.categorization.unwrap();
    assert_eq!(c.source, "llm");
    assert_eq!(c.model.as_deref(), Some("gpt-test"));
    assert_eq!(c.confidence, 0.9);
    assert_eq!(
        c.reasoning,
        "The language model (gpt-test) filed it under Software › Hosting: the text mentions \"hetzner\""
    );

    // What left the platform: per transaction its merchant, description, sign and size,
    // and the category names; nothing else of the tenant.
    let requests = llm.requests();
    assert_eq!(requests.len(), 1);
    let text = requests[0].to_string();
    for secret in [
        env.account.to_string(),
        env.tenant.as_uuid().to_string(),
        env.user.as_uuid().to_string(),
        first.to_string(),
        IBAN_TEXT.to_string(),
        "DE89 3704".to_string(),
        "vertraulich".to_string(),
        "77123".to_string(),
        "4217".to_string(),
        "42.17".to_string(),
        "42,17".to_string(),
        "2026-12".to_string(),
        "EUR".to_string(),
    ] {
        assert!(
            !text.contains(&secret),
            "the request carries {secret}: {text}"
        );
    }
    let input = shown(&requests[0]);
    let keys: BTreeSet<&str> = input
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["categories", "transactions"]));
    let items = input["transactions"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let item_keys: BTreeSet<&str> = items[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        item_keys,
        BTreeSet::from(["i", "merchant", "description", "sign", "size"])
    );
    assert_eq!(items[0]["merchant"], "Hetzner Online");
    assert_eq!(items[0]["description"], "Dedicated server AX41");
    assert_eq!(items[0]["sign"], "expense");
    assert_eq!(items[0]["size"], "10-100");
    let categories: BTreeSet<String> = input["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(categories, offered(&env));

    // The same merchant again: the cache answers, no call.
    let second = env
        .spend(
            "HETZNER ONLINE GMBH",
            "SEPA-Lastschrift Rechnung R0021663021",
            -4_641,
        )
        .await;
    let summary = env.run_queued_with(&categorizer).await;
    assert_eq!(summary[0].llm_calls, 0, "{summary:?}");
    assert_eq!(llm.calls(), 1);
    let t = env.transaction(second).await;
    assert_eq!(t.category_id, Some(env.cat("Hosting")));
    assert_eq!(t.categorization.unwrap().source, "llm");

    // The day's budget is two calls: the second is made, the third is not.
    let figma = env.spend("Figma", "Figma Professional plan", -1_500).await;
    env.run_queued_with(&categorizer).await;
    assert_eq!(llm.calls(), 2);
    assert_eq!(
        env.transaction(figma).await.category_id,
        Some(env.cat("Subscriptions"))
    );
    let notion = env
        .spend("Notion Labs", "Notion Plus workspace", -1_000)
        .await;
    let miro = env.spend("Miro", "Miro Starter", -800).await;
    let summary = env.run_queued_with(&categorizer).await;
    assert_eq!(llm.calls(), 2, "no call beyond the budget");
    assert!(
        summary.iter().all(|s| s.llm_calls == 0 && s.undecided == 1),
        "{summary:?}"
    );
    assert_eq!(env.transaction(notion).await.category_id, None);
    assert_eq!(env.transaction(miro).await.category_id, None);
    let mut tx = env.tx().await;
    let settings = categorizer.settings(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert!(settings.llm_configured);
    assert_eq!((settings.llm_daily_calls, settings.llm_calls_today), (2, 2));
}

const IBAN_TEXT: &str = crate::IBAN;

#[tokio::test]
async fn a_failing_model_leaves_transactions_undecided_and_the_run_succeeds() {
    let env = Env::new().await;
    let llm = stand_in().await;
    let categorizer = with_llm(&env, &llm, 50, Duration::from_millis(500));
    let t = env
        .spend("Hetzner Online", "Dedicated server AX41", -4_217)
        .await;
    let run = Run::Arrived {
        transaction_ids: vec![t],
    };
    let modes = [
        LlmMode::RateLimited {
            retry_after_secs: 30,
        },
        LlmMode::Malformed,
        LlmMode::Slow(Duration::from_secs(3)),
        LlmMode::ServerError,
        LlmMode::Refusal,
    ];
    for (n, mode) in modes.into_iter().enumerate() {
        llm.set_mode(mode.clone());
        let summary = categorizer
            .run(&env.kdb, env.tenant, &run, None)
            .await
            .unwrap_or_else(|e| panic!("{mode:?} failed the run: {e:?}"));
        assert_eq!(
            (summary.llm_calls, summary.llm, summary.undecided),
            (1, 0, 1),
            "{mode:?}: {summary:?}"
        );
        assert_eq!(llm.calls(), n + 1, "{mode:?}");
        let now = env.transaction(t).await;
        assert_eq!(now.category_id, None, "{mode:?}");
        assert!(now.categorization.is_none(), "{mode:?}");
    }
    // Nothing of the failures was cached: a model that answers again decides it.
    llm.set_mode(LlmMode::Answer);
    let summary = categorizer
        .run(&env.kdb, env.tenant, &run, None)
        .await
        .unwrap();
    assert_eq!((summary.llm_calls, summary.llm), (1, 1), "{summary:?}");
    assert_eq!(
        env.transaction(t).await.category_id,
        Some(env.cat("Hosting"))
    );

    // A name that was not offered is no answer.
    llm.set_mode(LlmMode::Content(
        r#"{"answers":[{"i":0,"category":"Crypto","confidence":0.99,"reason":"made up"}]}"#.into(),
    ));
    let odd = env.spend("Mystery Vendor", "Something", -999).await;
    let summary = categorizer
        .run(
            &env.kdb,
            env.tenant,
            &Run::Arrived {
                transaction_ids: vec![odd],
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (summary.llm_calls, summary.undecided),
        (1, 1),
        "{summary:?}"
    );
    assert_eq!(env.transaction(odd).await.category_id, None);
}

#[tokio::test]
async fn an_unsure_model_waits_for_a_person() {
    let env = Env::new().await;
    let llm = stand_in().await;
    let categorizer = with_llm(&env, &llm, 5, Duration::from_secs(10));
    let mut tx = env.tx().await;
    categorizer
        .put_settings(&mut tx, None, 0.95, true)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let t = env.spend("Figma", "Figma Professional plan", -1_500).await;
    let summary = env.run_queued_with(&categorizer).await;
    assert_eq!(summary[0].approvals, 1, "{summary:?}");
    assert_eq!(env.transaction(t).await.category_id, None);
    let mut tx = env.tx().await;
    let pending = categorizer
        .approvals(&mut tx, ApprovalStatus::Pending, &env.keyset())
        .await
        .unwrap()
        .data;
    tx.commit().await.unwrap();
    assert_eq!(pending.len(), 1);
    let a = &pending[0];
    assert_eq!(a.transaction_id, t);
    assert_eq!(
        (a.source.as_str(), a.model.as_deref()),
        ("llm", Some("gpt-test"))
    );
    assert_eq!(a.category_id, env.cat("Subscriptions"));
    assert_eq!(a.confidence, 0.9);

    // Switched off for the tenant: no call at all.
    let mut tx = env.tx().await;
    categorizer
        .put_settings(&mut tx, None, 0.7, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let other = env.spend("Notion Labs", "Notion Plus", -1_000).await;
    let before = llm.calls();
    env.run_queued_with(&categorizer).await;
    assert_eq!(llm.calls(), before);
    assert_eq!(env.transaction(other).await.category_id, None);
}

/// The cache keeps a category id per merchant with no foreign key, and the pipeline uses
/// a cached answer without checking that its category still exists: after the category
/// is deleted (its transactions reassigned), the next transaction of that merchant fails
/// the whole run on the transactions' foreign key.
#[tokio::test]
async fn a_cached_answer_whose_category_was_deleted_does_not_break_the_run() {
    let env = Env::new().await;
    let mut tx = env.tx().await;
    let temp = env
        .ledger
        .create_category(
            &mut tx,
            ledger::NewCategory {
                name: kernel::DisplayName::parse("name", "Servers").unwrap(),
                kind: ledger::CategoryKind::Expense,
                parent_id: None,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let llm = LlmStandIn::start().await.unwrap();
    llm.answer_with(vec![("hetzner".into(), "Servers".into())]);
    let categorizer = with_llm(&env, &llm, 10, Duration::from_secs(10));
    let first = env
        .spend("Hetzner Online", "Dedicated server AX41", -4_217)
        .await;
    env.run_queued_with(&categorizer).await;
    assert_eq!(env.transaction(first).await.category_id, Some(temp.id));

    let mut tx = env.tx().await;
    env.ledger
        .delete_category(&mut tx, temp.id, Some(env.cat("Hosting")))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let next = env
        .spend("Hetzner Online", "Dedicated server AX52", -6_188)
        .await;
    let run = Run::Arrived {
        transaction_ids: vec![next],
    };
    let result = categorizer.run(&env.kdb, env.tenant, &run, None).await;
    assert!(
        result.is_ok(),
        "a cached answer naming a deleted category fails the run: {:?}",
        result.err()
    );
    assert_ne!(env.transaction(next).await.category_id, Some(temp.id));
}
