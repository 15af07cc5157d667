//! The pipeline's order, the rules' actions, and what a decision says about itself.

use categorize::{
    NewRule, Run,
    rules::{Actions, Field, Operator},
};
use kernel::DisplayName;
use ledger::{CategoryKind, NewCategory};

use crate::{Env, all, file_under, merchant_contains, nothing, split, tag, text};

#[tokio::test]
async fn rules_run_in_position_order_before_the_history() {
    let env = Env::new().await;
    // The history says GitHub is Subscriptions (three imports: 94% sure).
    for d in ["Team 9 seats", "Team 9 seats", "Team 10 seats"] {
        env.history("GitHub", d, -3_600, "Subscriptions").await;
    }
    // Created out of order: positions decide, not creation.
    let business = env
        .rule(
            "Business plans are marketing",
            Some(30),
            all(vec![text(
                Field::Description,
                Operator::Contains,
                "business",
            )]),
            file_under(env.cat("Marketing")),
        )
        .await;
    let copilot = env
        .rule(
            "Copilot is hosting",
            Some(20),
            all(vec![text(
                Field::Description,
                Operator::Contains,
                "copilot",
            )]),
            file_under(env.cat("Hosting")),
        )
        .await;
    let tags = env
        .rule(
            "Tag dev tools",
            Some(10),
            merchant_contains("github"),
            tag(&["dev-tools"]),
        )
        .await;
    let disabled = env
        .new_rule(NewRule {
            name: "Disabled".into(),
            position: Some(5),
            enabled: false,
            conditions: merchant_contains("github"),
            actions: file_under(env.cat("Advertising")),
        })
        .await;
    let rules = env.rules().await;
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Disabled",
            "Tag dev tools",
            "Copilot is hosting",
            "Business plans are marketing"
        ]
    );

    // The history's run first: a rule's decision joins the history and would dilute it.
    let by_history = env.spend("GitHub", "GitHub Team 11 seats", -4_400).await;
    let by_rule = env.spend("GitHub", "GitHub Copilot Business", -1_900).await;
    let summary = env.run_queued().await;
    let rule_count: usize = summary.iter().map(|s| s.rule).sum();
    let similarity_count: usize = summary.iter().map(|s| s.similarity).sum();
    assert_eq!((rule_count, similarity_count), (1, 1), "{summary:?}");

    // The first category-setting rule by position decides; the history does not.
    let t = env.transaction(by_rule).await;
    assert_eq!(t.category_id, Some(env.cat("Hosting")));
    assert_eq!(
        t.tags,
        ["dev-tools"],
        "the tags-only rule before it applied too"
    );
    let c = t.categorization.unwrap();
    assert_eq!(c.source, "rule");
    assert_eq!(c.rule_id, Some(copilot.id));
    assert!(
        c.reasoning.contains("Copilot is hosting"),
        "{}",
        c.reasoning
    );

    // A tags-only rule adds its tags and lets the history decide.
    let t = env.transaction(by_history).await;
    assert_eq!(t.category_id, Some(env.cat("Subscriptions")));
    assert_eq!(t.tags, ["dev-tools"]);
    let c = t.categorization.unwrap();
    assert_eq!(c.source, "similarity");
    assert_eq!(c.rule_id, None);

    // Hits and when: the tags rule matched both, copilot one; the later category rule was
    // never reached and the disabled one never ran.
    let rules = env.rules().await;
    let hits = |id| {
        let r = rules.iter().find(|r| r.id == id).unwrap();
        (r.hits, r.last_hit_at.is_some())
    };
    assert_eq!(hits(tags.id), (2, true));
    assert_eq!(hits(copilot.id), (1, true));
    assert_eq!(hits(business.id), (0, false));
    assert_eq!(hits(disabled.id), (0, false));
    let first_hit = rules
        .iter()
        .find(|r| r.id == copilot.id)
        .unwrap()
        .last_hit_at
        .unwrap();

    // Another hit moves them on.
    env.spend("GITHUB.COM/BILLING", "GitHub Copilot", -1_900)
        .await;
    env.run_queued().await;
    let rules = env.rules().await;
    let again = rules.iter().find(|r| r.id == copilot.id).unwrap();
    assert_eq!(again.hits, 2);
    assert!(again.last_hit_at.unwrap() >= first_hit);
    assert!(
        rules
            .iter()
            .find(|r| r.id == disabled.id)
            .is_some_and(|r| r.hits == 0)
    );
}

#[tokio::test]
async fn a_split_adds_up_exactly_a_rename_is_searchable_and_a_transfer_is_filed_as_one() {
    let env = Env::new().await;
    let (rent, office) = (env.cat("Rent"), env.cat("Office"));
    let halves = env
        .rule(
            "Coworking is half rent",
            None,
            merchant_contains("wework"),
            split(&[(rent, 50), (office, 50)]),
        )
        .await;
    env.rule(
        "Amazon",
        None,
        all(vec![text(
            Field::Merchant,
            Operator::StartsWith,
            "AMZN Mktp",
        )]),
        Actions {
            merchant: Some("Amazon".into()),
            category_id: Some(env.cat("Supplies")),
            ..nothing()
        },
    )
    .await;
    env.rule(
        "Savings",
        None,
        all(vec![text(
            Field::Description,
            Operator::Contains,
            "transfer to sav",
        )]),
        Actions {
            transfer: Some(true),
            ..nothing()
        },
    )
    .await;

    let wework = env
        .spend("WeWork", "WEWORK MEMBERSHIP 115 BROADWAY", -1_001)
        .await;
    let amazon = env
        .spend("AMZN Mktp US*2K4", "AMZN Mktp US*2K4 Amzn.com/bill", -7_498)
        .await;
    let savings = env
        .spend(
            "Own bank",
            "ONLINE BANKING TRANSFER TO SAV ...4821",
            -500_000,
        )
        .await;
    assert!(env.search("amazon").await.is_empty(), "not yet renamed");
    env.run_queued().await;

    // -1001 over 50/50: the parts keep the sign and add up to the cent.
    let t = env.transaction(wework).await;
    assert_eq!(t.category_id, None, "a split has no single category");
    let mut parts: Vec<(uuid::Uuid, i64)> =
        t.splits.iter().map(|s| (s.category_id, s.amount)).collect();
    parts.sort_by_key(|p| p.1);
    assert_eq!(parts, [(rent, -501), (office, -500)]);
    assert_eq!(t.splits.iter().map(|s| s.amount).sum::<i64>(), -1_001);
    let c = t.categorization.unwrap();
    assert_eq!((c.source.as_str(), c.rule_id), ("rule", Some(halves.id)));
    assert!(
        c.reasoning.contains("split: 50% Rent, 50% Office"),
        "{}",
        c.reasoning
    );

    // The merchant is renamed, and the search finds the new name.
    let t = env.transaction(amazon).await;
    assert_eq!(t.merchant.as_deref(), Some("Amazon"));
    assert_eq!(t.category_id, Some(env.cat("Supplies")));
    let found: Vec<uuid::Uuid> = env.search("amazon").await.iter().map(|t| t.id).collect();
    assert_eq!(found, [amazon]);

    // A transfer rule files it under the tenant's transfer category.
    let t = env.transaction(savings).await;
    assert_eq!(t.category_id, Some(env.cat("Transfers")));
    let c = t.categorization.unwrap();
    assert!(
        c.reasoning.contains("marked as a transfer (Transfers)"),
        "{}",
        c.reasoning
    );
}

/// `rules::split_amount` documents that a share too small for a minor unit gives a zero
/// part, and that "the caller leaves them out (and books a lone remaining part as a plain
/// category)". The pipeline's caller (`pipeline::rule_change`) does not: it hands the zero
/// part to the ledger, which refuses it, and the whole batch (and the run) fails.
#[tokio::test]
async fn a_split_of_a_cent_books_the_cent_and_the_run_goes_on() {
    let env = Env::new().await;
    let (rent, office) = (env.cat("Rent"), env.cat("Office"));
    env.rule(
        "Coworking is half rent",
        None,
        merchant_contains("wework"),
        split(&[(rent, 50), (office, 50)]),
    )
    .await;
    let cent = env.spend("WeWork", "WEWORK rounding", -1).await;
    let other = env.spend("WeWork", "WEWORK MEMBERSHIP", -2_000).await;
    let run = Run::Arrived {
        transaction_ids: vec![cent, other],
    };
    let result = env.categorizer.run(&env.kdb, env.tenant, &run, None).await;
    assert!(
        result.is_ok(),
        "a one-cent transaction under a 50/50 split rule fails the run: {:?}",
        result.err()
    );
    let t = env.transaction(cent).await;
    assert_eq!(
        t.category_id,
        Some(rent),
        "the lone part is a plain category"
    );
    assert!(t.splits.is_empty());
    let t = env.transaction(other).await;
    assert_eq!(t.splits.len(), 2, "the rest of the batch is decided");
}

/// A rule keeps its category's id in its JSON (no foreign key), and a category no
/// transaction uses can be deleted. Then every run that the rule matches fails on the
/// transactions' foreign key, so the job is retried and nothing of the batch is decided.
#[tokio::test]
async fn a_rule_whose_category_was_deleted_does_not_break_the_run() {
    let env = Env::new().await;
    let mut tx = env.tx().await;
    let temp = env
        .ledger
        .create_category(
            &mut tx,
            NewCategory {
                name: DisplayName::parse("name", "Temporary").unwrap(),
                kind: CategoryKind::Expense,
                parent_id: None,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    env.rule(
        "To temp",
        None,
        merchant_contains("hetzner"),
        file_under(temp.id),
    )
    .await;
    env.rule(
        "Cloud",
        None,
        merchant_contains("aws"),
        file_under(env.cat("Hosting")),
    )
    .await;
    let mut tx = env.tx().await;
    env.ledger
        .delete_category(&mut tx, temp.id, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let hetzner = env.spend("Hetzner Online", "Server", -4_641).await;
    let aws = env.spend("AWS EMEA", "Invoice", -18_433).await;
    let run = Run::Arrived {
        transaction_ids: vec![hetzner, aws],
    };
    let result = env.categorizer.run(&env.kdb, env.tenant, &run, None).await;
    assert!(
        result.is_ok(),
        "a rule naming a deleted category fails the whole run: {:?}",
        result.err()
    );
    assert_eq!(
        env.transaction(aws).await.category_id,
        Some(env.cat("Hosting"))
    );
    assert_eq!(env.transaction(hetzner).await.category_id, None);
}

#[tokio::test]
async fn a_decision_explains_itself() {
    let env = Env::new().await;
    let cloud = env
        .rule(
            "Cloud hosting",
            None,
            all(vec![
                text(Field::Merchant, Operator::Contains, "aws"),
                crate::sign(categorize::rules::Sign::Negative),
            ]),
            file_under(env.cat("Hosting")),
        )
        .await;
    let mut examples = Vec::new();
    for d in ["Team 9 seats", "Team 9 seats", "Team 10 seats"] {
        examples.push(env.history("GitHub", d, -3_600, "Subscriptions").await);
    }
    let by_rule = env
        .spend("AWS EMEA", "AWS EMEA aws.amazon.co LU Invoice", -18_433)
        .await;
    let by_history = env.spend("GitHub", "GitHub Team 11 seats", -4_400).await;
    let nothing_alike = env.spend("Kiosk 7", "Zeitschriften", -350).await;
    env.run_queued().await;

    let mut tx = env.tx().await;
    let e = env.categorizer.explain(&mut tx, by_rule).await.unwrap();
    assert_eq!(e.category_id, Some(env.cat("Hosting")));
    assert!(
        e.explanation.starts_with(
            "Rule 'Cloud hosting' matched: merchant contains 'aws' and amount is negative"
        ),
        "{}",
        e.explanation
    );
    assert!(
        e.explanation.contains("filed under Software › Hosting"),
        "{}",
        e.explanation
    );
    let c = e.categorization.unwrap();
    assert_eq!(c.source, "rule");
    assert_eq!(c.confidence, 1.0);
    assert_eq!(c.rule_id, Some(cloud.id));
    assert_eq!(c.neighbours, None);
    assert!(e.approval.is_none());

    let e = env.categorizer.explain(&mut tx, by_history).await.unwrap();
    assert_eq!(e.category_id, Some(env.cat("Subscriptions")));
    assert_eq!(
        e.explanation,
        "3 earlier transactions from GitHub were filed under Software › Subscriptions."
    );
    let c = e.categorization.unwrap();
    assert_eq!(c.source, "similarity");
    assert_eq!(c.rule_id, None);
    // Three imports, each right with p = 0.6: 1 - 0.4³.
    assert!((c.confidence - 0.936).abs() < 1e-9, "{}", c.confidence);
    let neighbours = c.neighbours.unwrap();
    let mut ids: Vec<uuid::Uuid> = neighbours.iter().map(|n| n.transaction_id).collect();
    ids.sort();
    examples.sort();
    assert_eq!(ids, examples);
    assert!(
        neighbours
            .iter()
            .all(|n| n.similarity == 1.0 && n.category_id == env.cat("Subscriptions"))
    );

    let e = env
        .categorizer
        .explain(&mut tx, nothing_alike)
        .await
        .unwrap();
    assert_eq!(e.category_id, None);
    assert!(e.categorization.is_none());
    assert!(
        e.explanation.starts_with("Not categorised yet"),
        "{}",
        e.explanation
    );
    tx.commit().await.unwrap();
}
