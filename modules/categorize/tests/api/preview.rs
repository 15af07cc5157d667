//! A rule's preview: what it would match, without writing anything.

use crate::{Env, day, file_under, merchant_contains, new_tx};

/// Everything a preview could have touched, as text.
async fn snapshot(env: &Env) -> Vec<String> {
    let mut tx = env.tx().await;
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(t)::text FROM transactions t WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(env.tenant.as_uuid())
    .fetch_all(tx.conn())
    .await
    .unwrap();
    for table in [
        "transaction_splits",
        "categorization_rules",
        "approvals",
        "jobs",
        "events",
        "llm_usage",
        "llm_cache",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE tenant_id = $1"
        )))
        .bind(env.tenant.as_uuid())
        .fetch_one(tx.conn())
        .await
        .unwrap();
        out.push(format!("{table}: {n}"));
    }
    tx.commit().await.unwrap();
    out
}

#[tokio::test]
async fn a_rule_test_counts_matches_and_locked_ones_and_writes_nothing() {
    let env = Env::new().await;
    let mut aws = Vec::new();
    for n in 0..5u64 {
        let t = env
            .enter(new_tx(
                env.account,
                day(n),
                Some("AWS EMEA"),
                &format!("Invoice {n}"),
                -10_000 - n as i64,
            ))
            .await;
        aws.push(t.id);
    }
    for n in 0..3u64 {
        env.enter(new_tx(
            env.account,
            day(n),
            Some("Pret A Manger"),
            "Lunch",
            -895,
        ))
        .await;
    }
    // A person filed one of them already: applying leaves it.
    env.choose(aws[1], "Subscriptions").await;
    let before = snapshot(&env).await;

    let mut tx = env.tx().await;
    let test = env
        .categorizer
        .test_rule(
            &mut tx,
            &merchant_contains("aws"),
            &file_under(env.cat("Hosting")),
            2,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(test.matched, 5);
    assert_eq!(test.locked, 1);
    assert_eq!(test.scanned, 8);
    let first: Vec<uuid::Uuid> = test.data.iter().map(|t| t.id).collect();
    assert_eq!(first, [aws[4], aws[3]], "the newest first page");
    assert!(
        test.data.iter().all(|t| t.category_id.is_none()),
        "shown as they are"
    );

    let after = snapshot(&env).await;
    assert_eq!(before, after, "a preview writes nothing");
    // Nothing was queued by it either (the entries queued theirs before).
    assert!(after.iter().any(|l| l == "categorization_rules: 0"));

    // A malformed pattern is refused, with its field.
    let mut tx = env.tx().await;
    let bad = env
        .categorizer
        .test_rule(
            &mut tx,
            &crate::all(vec![crate::text(
                categorize::rules::Field::Merchant,
                categorize::rules::Operator::Regex,
                "(unclosed",
            )]),
            &file_under(env.cat("Hosting")),
            2,
        )
        .await;
    tx.rollback().await.unwrap();
    match bad {
        Err(categorize::CategorizeError::Invalid(f)) => {
            assert_eq!(f.field, "conditions.items[0].value")
        }
        other => panic!("{other:?}"),
    }
}
