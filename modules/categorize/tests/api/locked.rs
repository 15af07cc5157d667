//! A person's choice of category: no run and no rule changes it, and the history learns it.

use categorize::{RuleChanges, Run, RunFilter};

use crate::{Env, day, file_under, merchant_contains, new_tx};

#[tokio::test]
async fn a_persons_category_survives_later_runs_and_rule_applies() {
    let env = Env::new().await;
    let cloud = env
        .rule(
            "Cloud",
            None,
            merchant_contains("aws"),
            file_under(env.cat("Hosting")),
        )
        .await;
    let chosen = env
        .spend("AWS EMEA", "Invoice EUINDE25-2841937", -18_433)
        .await;
    let automated = env
        .spend("AWS EMEA", "Invoice EUINDE25-2907715", -21_090)
        .await;
    env.run_queued().await;
    assert_eq!(
        env.transaction(chosen).await.category_id,
        Some(env.cat("Hosting"))
    );

    let edited = env.choose(chosen, "Subscriptions").await;
    assert!(edited.locked_fields.contains(&"category".to_string()));
    let before = env.transaction(chosen).await;
    assert_eq!(before.categorization.as_ref().unwrap().source, "person");

    // The rule now says Equipment, and is applied to every existing transaction.
    let mut tx = env.tx().await;
    env.categorizer
        .update_rule(
            &mut tx,
            cloud.id,
            Some(cloud.version),
            RuleChanges {
                actions: Some(file_under(env.cat("Equipment"))),
                ..RuleChanges::default()
            },
        )
        .await
        .unwrap();
    env.categorizer.apply_rule(&mut tx, cloud.id).await.unwrap();
    tx.commit().await.unwrap();
    let queued = env.queued().await;
    assert_eq!(
        serde_json::from_value::<Run>(queued[0].2.clone()).unwrap(),
        Run::Rule { rule_id: cloud.id }
    );
    let summary = env.run_queued().await;
    assert_eq!(
        summary[0].considered, 1,
        "the locked one is not even looked at"
    );
    assert_eq!(summary[0].rule, 1);
    assert_eq!(
        env.transaction(automated).await.category_id,
        Some(env.cat("Equipment"))
    );
    let after = env.transaction(chosen).await;
    assert_eq!(after.category_id, Some(env.cat("Subscriptions")));
    assert_eq!(after.categorization, before.categorization);
    assert_eq!(after.version, before.version);

    // A run over everything, categorised ones included, leaves it too.
    let summary = env
        .run(Run::Filter {
            filter: RunFilter {
                include_categorized: true,
                ..RunFilter::default()
            },
        })
        .await;
    assert_eq!(summary.considered, 1, "{summary:?}");
    let after = env.transaction(chosen).await;
    assert_eq!(after.category_id, Some(env.cat("Subscriptions")));
    assert_eq!(after.categorization, before.categorization);
    assert_eq!(after.version, before.version);
}

#[tokio::test]
async fn a_persons_override_teaches_the_history() {
    let env = Env::new().await;
    let broad = env
        .rule(
            "Online services",
            None,
            merchant_contains("online"),
            file_under(env.cat("Subscriptions")),
        )
        .await;
    let first = env.spend("Hetzner Online", "Server rental", -4_641).await;
    env.run_queued().await;
    assert_eq!(
        env.transaction(first).await.category_id,
        Some(env.cat("Subscriptions"))
    );

    // A person corrects it; the rule that got it wrong is switched off.
    env.choose(first, "Hosting").await;
    let mut tx = env.tx().await;
    env.categorizer
        .update_rule(
            &mut tx,
            broad.id,
            None,
            RuleChanges {
                enabled: Some(false),
                ..RuleChanges::default()
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let next = env
        .spend(
            "HETZNER ONLINE GMBH",
            "SEPA-Lastschrift Hetzner Online GmbH Rechnung R0021663021",
            -4_641,
        )
        .await;
    let summary = env.run_queued().await;
    assert_eq!(summary[0].similarity, 1, "{summary:?}");
    let t = env.transaction(next).await;
    assert_eq!(t.category_id, Some(env.cat("Hosting")));
    let c = t.categorization.unwrap();
    assert_eq!(c.source, "similarity");
    // One person's example: p = 3 / (3 + 2/3).
    assert!(
        (c.confidence - 3.0 / (3.0 + 2.0 / 3.0)).abs() < 1e-9,
        "{}",
        c.confidence
    );
    assert_eq!(
        c.reasoning,
        "1 earlier transaction from HETZNER ONLINE GMBH was filed under Software › Hosting, \
         one of them by a person."
    );
    let neighbours = c.neighbours.unwrap();
    assert_eq!(neighbours.len(), 1);
    assert_eq!(neighbours[0].transaction_id, first);
    assert!(
        t.locked_fields.is_empty(),
        "the history's decision locks nothing"
    );
}

/// A transaction entered by hand with its category carries the person's decision
/// (`categorization.source = "person"`) without locking the field: a rule's apply and a run
/// with `include_categorized` leave it all the same.
#[tokio::test]
async fn a_category_a_person_entered_with_the_transaction_is_not_redone() {
    let env = Env::new().await;
    let mut new = new_tx(
        env.account,
        day(1),
        Some("AWS EMEA"),
        "Team offsite dinner",
        -18_433,
    );
    new.category_id = Some(env.cat("Meals"));
    let entered = env.enter(new).await;
    assert_eq!(entered.categorization.as_ref().unwrap().source, "person");
    let cloud = env
        .rule(
            "Cloud",
            None,
            merchant_contains("aws"),
            file_under(env.cat("Hosting")),
        )
        .await;
    let summary = env.run(Run::Rule { rule_id: cloud.id }).await;
    assert_eq!(summary.considered, 0, "{summary:?}");
    env.run(Run::Filter {
        filter: RunFilter {
            include_categorized: true,
            ..RunFilter::default()
        },
    })
    .await;
    let after = env.transaction(entered.id).await;
    assert_eq!(
        after.category_id,
        Some(env.cat("Meals")),
        "a rule's apply overwrote the category a person entered: {:?}",
        after.categorization
    );
    assert_eq!(after.categorization.unwrap().source, "person");
}
