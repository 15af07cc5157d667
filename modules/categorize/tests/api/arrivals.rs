//! Arrivals: what the ledger queues, in the transaction that writes the transactions.

use categorize::Run;
use imports::{ImportStatus, NewImport};
use ledger::TransactionSource;
use serde_json::json;

use crate::{Env, day, file_under, new_tx, text};
use categorize::rules::{Field, Operator};

#[tokio::test]
async fn a_manual_uncategorised_transaction_queues_a_run_in_its_own_transaction() {
    let env = Env::new().await;

    // Rolled back: the transaction and its job are gone together.
    let mut tx = env.tx().await;
    env.ledger
        .create_transaction(
            &mut tx,
            new_tx(env.account, day(1), Some("AWS EMEA"), "Invoice", -18_433),
            TransactionSource::Manual,
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        env.queued().await.is_empty(),
        "a rolled-back entry queues nothing"
    );

    // Committed: exactly one run naming it, on the categorize queue.
    let t = env.spend("AWS EMEA", "Invoice", -18_433).await;
    let queued = env.queued().await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].1, "categorize");
    assert_eq!(queued[0].2, json!({"arrived": {"transaction_ids": [t]}}));
    assert_eq!(
        serde_json::from_value::<Run>(queued[0].2.clone()).unwrap(),
        Run::Arrived {
            transaction_ids: vec![t]
        }
    );

    // A transaction entered with its category queues nothing more.
    let mut categorised = new_tx(env.account, day(2), Some("Cafe"), "Lunch", -1_250);
    categorised.category_id = Some(env.cat("Meals"));
    env.enter(categorised).await;
    assert_eq!(
        env.queued().await.len(),
        1,
        "a categorised entry queues no run"
    );

    // The queued run is the pipeline over that transaction.
    let summary = env.run_queued().await;
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].considered, 1);
    assert_eq!(summary[0].undecided, 1, "no rule, no history: undecided");
}

#[tokio::test]
async fn an_imports_promotion_queues_one_run_for_the_import() {
    let env = Env::new().await;
    env.rule(
        "Coffee",
        None,
        crate::all(vec![text(Field::Description, Operator::Contains, "coffee")]),
        file_under(env.cat("Meals")),
    )
    .await;
    let csv = "Date,Payee,Description,Amount\n\
               2026-02-03,AWS EMEA,Invoice EUINDE25-2841937,-184.33\n\
               2026-02-04,Blue Bottle,Coffee with a client,-12.50\n\
               2026-02-05,Blue Bottle,Coffee beans,-23.00\n";
    let mut tx = env.tx().await;
    let mut upload = env
        .imports
        .start(
            &mut tx,
            NewImport {
                account_id: env.account,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.imports
        .write(&mut tx, &mut upload, csv.as_bytes())
        .await
        .unwrap();
    let created = env.imports.finish(&mut tx, upload).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        env.queued().await.is_empty(),
        "nothing is promoted before the import runs"
    );
    env.imports
        .run(&env.kdb, env.tenant, created.import_id)
        .await
        .unwrap();
    let mut tx = env.tx().await;
    let import = env
        .imports
        .import(&mut tx, created.import_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(import.status, ImportStatus::Completed, "{:?}", import.error);
    assert_eq!(import.inserted, 3);

    let queued = env.queued().await;
    assert_eq!(queued.len(), 1, "one run for the whole import: {queued:?}");
    assert_eq!(queued[0].2, json!({"import": {"import_id": import.id}}));

    let summary = env.run_queued().await;
    assert_eq!(
        summary[0].considered, 3,
        "the run looks at the import's rows"
    );
    assert_eq!(summary[0].rule, 2, "{:?}", summary[0]);
    let mut tx = env.tx().await;
    let filed: Vec<(Option<String>, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT merchant, category_id FROM transactions WHERE tenant_id = $1 AND import_id = $2
         ORDER BY date",
    )
    .bind(env.tenant.as_uuid())
    .bind(import.id)
    .fetch_all(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        filed,
        [
            (Some("AWS EMEA".to_string()), None),
            (Some("Blue Bottle".to_string()), Some(env.cat("Meals"))),
            (Some("Blue Bottle".to_string()), Some(env.cat("Meals"))),
        ]
    );
}
