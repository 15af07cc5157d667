//! Approvals: a suggestion below the tenant's threshold waits for a person.

use categorize::{
    ApprovalStatus, CategorizeError, Decision, DecisionAction,
    rules::{Field, Operator},
};
use serde_json::json;

use crate::Env;

async fn threshold(env: &Env, threshold: f64) {
    let mut tx = env.tx().await;
    let settings = env.categorizer.settings(&mut tx).await.unwrap();
    assert_eq!(settings.approval_threshold, categorize::DEFAULT_THRESHOLD);
    let put = env
        .categorizer
        .put_settings(&mut tx, Some(settings.version), threshold, true)
        .await
        .unwrap();
    assert_eq!(put.approval_threshold, threshold);
    tx.commit().await.unwrap();
}

fn approve(create_rule: bool) -> Decision {
    Decision {
        action: DecisionAction::Approve,
        category_id: None,
        create_rule,
    }
}

#[tokio::test]
async fn doubtful_suggestions_wait_and_a_persons_decision_settles_them() {
    let env = Env::new().await;
    threshold(&env, 0.95).await;
    // Three imports each: 94% sure, below 95%.
    for d in ["Team 9 seats", "Team 9 seats", "Team 10 seats"] {
        env.history("GitHub", d, -3_600, "Subscriptions").await;
    }
    for d in ["Pro plan", "Pro plan", "Org plan"] {
        env.history("Figma", d, -1_500, "Subscriptions").await;
    }
    let approved = env.spend("GitHub", "GitHub Team 11 seats", -4_400).await;
    let with_rule = env.spend("GitHub", "GitHub Team 12 seats", -4_800).await;
    let resolved = env.spend("GitHub", "GitHub Team 13 seats", -5_200).await;
    let overridden = env.spend("Figma", "Figma banner design", -1_500).await;
    let summary = env.run_queued().await;
    assert_eq!(
        summary.iter().map(|s| s.approvals).sum::<usize>(),
        4,
        "{summary:?}"
    );
    assert_eq!(summary.iter().map(|s| s.similarity).sum::<usize>(), 0);

    // They wait, uncategorised, and say so.
    for id in [approved, with_rule, resolved, overridden] {
        assert_eq!(env.transaction(id).await.category_id, None);
    }
    let mut tx = env.tx().await;
    let pending = env
        .categorizer
        .approvals(&mut tx, ApprovalStatus::Pending, &env.keyset())
        .await
        .unwrap()
        .data;
    assert_eq!(pending.len(), 4);
    let of = |id| {
        pending
            .iter()
            .find(|a| a.transaction_id == id)
            .unwrap()
            .clone()
    };
    let first = of(approved);
    assert_eq!(first.category_id, env.cat("Subscriptions"));
    assert_eq!(first.source, "similarity");
    assert!((first.confidence - 0.936).abs() < 1e-9);
    assert_eq!(first.neighbours.as_ref().map(Vec::len), Some(3));
    assert!(first.transaction.as_ref().is_some_and(|t| t.id == approved));
    let e = env.categorizer.explain(&mut tx, approved).await.unwrap();
    assert_eq!(
        e.explanation,
        "Waiting for a person to approve a suggestion (94% sure): 3 earlier transactions \
         from GitHub were filed under Software › Subscriptions."
    );
    assert_eq!(e.approval.map(|a| a.id), Some(first.id));
    tx.commit().await.unwrap();

    // Approve: the person's category, locked, saying what was approved.
    let mut tx = env.person().await;
    let decided = env
        .categorizer
        .decide(&mut tx, first.id, approve(false))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(decided.approval.status, ApprovalStatus::Approved);
    assert_eq!(decided.approval.decided_by, Some(env.user.as_uuid()));
    assert_eq!(
        decided.approval.decided_category_id,
        Some(env.cat("Subscriptions"))
    );
    assert!(decided.approval.decided_at.is_some());
    assert!(decided.rule.is_none());
    let t = env.transaction(approved).await;
    assert_eq!(t.category_id, Some(env.cat("Subscriptions")));
    assert!(t.locked_fields.contains(&"category".to_string()));
    let c = t.categorization.unwrap();
    assert_eq!(c.source, "person");
    assert!(
        c.reasoning.starts_with("Approved by a person."),
        "{}",
        c.reasoning
    );
    assert!(
        c.reasoning.contains("3 earlier transactions from GitHub"),
        "{}",
        c.reasoning
    );

    // Twice is refused.
    let mut tx = env.person().await;
    let again = env
        .categorizer
        .decide(&mut tx, first.id, approve(false))
        .await;
    assert!(
        matches!(again, Err(CategorizeError::Decided("approved"))),
        "{again:?}"
    );
    tx.rollback().await.unwrap();

    // Override: another category.
    let figma = of(overridden);
    let mut tx = env.person().await;
    let decided = env
        .categorizer
        .decide(
            &mut tx,
            figma.id,
            Decision {
                action: DecisionAction::Override,
                category_id: Some(env.cat("Marketing")),
                create_rule: false,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(decided.approval.status, ApprovalStatus::Overridden);
    assert_eq!(
        decided.approval.category_id,
        env.cat("Subscriptions"),
        "the suggestion stays"
    );
    assert_eq!(
        decided.approval.decided_category_id,
        Some(env.cat("Marketing"))
    );
    let t = env.transaction(overridden).await;
    assert_eq!(t.category_id, Some(env.cat("Marketing")));
    let c = t.categorization.unwrap();
    assert_eq!(
        (c.source.as_str(), c.reasoning.as_str()),
        ("person", "Chosen by a person, over a suggestion.")
    );
    let mut tx = env.person().await;
    let again = env
        .categorizer
        .decide(&mut tx, figma.id, approve(false))
        .await;
    assert!(
        matches!(again, Err(CategorizeError::Decided("overridden"))),
        "{again:?}"
    );
    tx.rollback().await.unwrap();

    // Approve with a rule: the rule is written and resolves the merchant's other waiting
    // approval, whose transaction the rule categorises.
    let mut tx = env.person().await;
    let decided = env
        .categorizer
        .decide(&mut tx, of(with_rule).id, approve(true))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(decided.resolved, 1);
    let rule = decided.rule.unwrap();
    assert_eq!(rule.name, "GitHub (from an approval)");
    assert_eq!(rule.conditions.items.len(), 1);
    let condition = &rule.conditions.items[0];
    assert_eq!(
        (condition.field, condition.op, condition.value.as_deref()),
        (Field::Merchant, Operator::Equals, Some("GitHub"))
    );
    assert_eq!(rule.actions.category_id, Some(env.cat("Subscriptions")));
    let stored = env.rules().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, rule.id);
    assert_eq!(stored[0].hits, 1, "it decided the resolved one");
    let t = env.transaction(resolved).await;
    assert_eq!(t.category_id, Some(env.cat("Subscriptions")));
    let c = t.categorization.unwrap();
    assert_eq!((c.source.as_str(), c.rule_id), ("rule", Some(rule.id)));
    assert!(t.locked_fields.is_empty());

    let mut tx = env.tx().await;
    let pending = env
        .categorizer
        .approvals(&mut tx, ApprovalStatus::Pending, &env.keyset())
        .await
        .unwrap()
        .data;
    assert!(pending.is_empty(), "{pending:?}");
    let closed = env
        .categorizer
        .approvals(&mut tx, ApprovalStatus::Resolved, &env.keyset())
        .await
        .unwrap()
        .data;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].transaction_id, resolved);
    assert_eq!(closed[0].resolved_by_rule, Some(rule.id));
    tx.commit().await.unwrap();

    // The audit trail.
    let needed = env.events("approval.needed").await;
    assert!(!needed.is_empty());
    assert!(
        needed
            .iter()
            .all(|(agent, actor, _)| agent == "categorizer" && actor == "system")
    );
    assert_eq!(
        needed
            .iter()
            .map(|e| e.2["count"].as_i64().unwrap())
            .sum::<i64>(),
        4
    );
    let batches = env.events("categorization.batch").await;
    assert_eq!(batches.len(), 4, "one batch per run");
    assert!(batches.iter().all(|(agent, _, _)| agent == "categorizer"));
    assert_eq!(
        batches
            .iter()
            .map(|e| e.2["approvals"].as_i64().unwrap())
            .sum::<i64>(),
        4
    );
    let decided = env.events("approval.decided").await;
    assert_eq!(decided.len(), 3);
    assert!(decided.iter().all(|(_, actor, _)| actor == "user"));
    let actions: Vec<&str> = decided
        .iter()
        .map(|e| e.2["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["approved", "overridden", "approved"]);
    assert_eq!(decided[1].2["category_id"], json!(env.cat("Marketing")));
    assert_eq!(decided[1].2["suggested"], json!(env.cat("Subscriptions")));
    assert_eq!(decided[2].2["rule_id"], json!(rule.id));
    assert_eq!(decided[2].2["resolved"], json!(1));
    assert_eq!(env.events("rule.created").await.len(), 1);
}

/// `ApprovalStatus::Resolved` is documented as "a rule … or a person's edit of the
/// transaction decided it", but nothing closes a waiting approval when a person edits the
/// transaction's category in the ledger: it stays pending, `explain` keeps saying the
/// transaction waits for a person, and the approvals queue keeps showing it.
#[tokio::test]
async fn a_persons_own_edit_settles_the_waiting_approval() {
    let env = Env::new().await;
    threshold(&env, 0.95).await;
    for d in ["Team 9 seats", "Team 9 seats", "Team 10 seats"] {
        env.history("GitHub", d, -3_600, "Subscriptions").await;
    }
    let t = env.spend("GitHub", "GitHub Team 11 seats", -4_400).await;
    env.run_queued().await;
    let mut tx = env.tx().await;
    assert!(
        env.categorizer
            .approval_of(&mut tx, t)
            .await
            .unwrap()
            .is_some()
    );
    tx.commit().await.unwrap();

    env.choose(t, "Hosting").await;
    let mut tx = env.tx().await;
    let e = env.categorizer.explain(&mut tx, t).await.unwrap();
    let waiting = env.categorizer.approval_of(&mut tx, t).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(e.category_id, Some(env.cat("Hosting")));
    assert_eq!(
        e.explanation, "Chosen by a person.",
        "the person chose the category, yet the approval still waits: {waiting:?}"
    );
    assert!(waiting.is_none());
}

/// A rule written after the suggestion decides the transaction in the next run, and the
/// waiting approval is resolved. `Approval::resolved_by_rule` is "the rule that resolved
/// it, when one did", but an ordinary run (not `Run::Rule`) resolves it with no rule named:
/// `pipeline.rs` passes a rule to `store::resolve_for` only when `step.rule_only`.
#[tokio::test]
async fn a_rule_of_a_later_run_resolves_the_waiting_approval_and_is_named() {
    let env = Env::new().await;
    threshold(&env, 0.95).await;
    for d in ["Team 9 seats", "Team 9 seats", "Team 10 seats"] {
        env.history("GitHub", d, -3_600, "Subscriptions").await;
    }
    let t = env.spend("GitHub", "GitHub Team 11 seats", -4_400).await;
    env.run_queued().await;
    let rule = env
        .rule(
            "GitHub is hosting",
            None,
            crate::merchant_contains("github"),
            crate::file_under(env.cat("Hosting")),
        )
        .await;
    let summary = env
        .run(categorize::Run::Arrived {
            transaction_ids: vec![t],
        })
        .await;
    assert_eq!(summary.rule, 1, "{summary:?}");
    let now = env.transaction(t).await;
    assert_eq!(now.category_id, Some(env.cat("Hosting")));
    let mut tx = env.tx().await;
    assert!(
        env.categorizer
            .approval_of(&mut tx, t)
            .await
            .unwrap()
            .is_none()
    );
    let closed = env
        .categorizer
        .approvals(&mut tx, ApprovalStatus::Resolved, &env.keyset())
        .await
        .unwrap()
        .data;
    tx.commit().await.unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].transaction_id, t);
    let batches = env.events("categorization.batch").await;
    assert_eq!(batches.last().unwrap().2["approvals_resolved"], json!(1));
    assert_eq!(
        closed[0].resolved_by_rule,
        Some(rule.id),
        "the approval a rule resolved does not say which rule"
    );
}
