//! Cursor sync against the Plaid stand-in: pages applied as a whole, restarts, pending to
//! posted, removals, re-links, a sync killed halfway, two at once, failures and repair.

use banking::{ConnectionStatus, SyncRun};
use kernel::idempotency::Fingerprint;
use ledger::{Editor, TransactionChanges};
use testkit::plaid::{Fault, PlaidAccount, PlaidTx};

use crate::support::{Env, applied};

#[tokio::test]
async fn three_pages_with_a_mutation_restart_are_applied_once_from_the_first_cursor() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let checking = env.plaid.account_ids(&item)[0].clone();
    for (i, amount) in ["72.10", "-1500.00", "0.01", "12.00", "3.50"]
        .iter()
        .enumerate()
    {
        env.plaid.add(
            &item,
            PlaidTx::new(
                format!("t{i}"),
                &checking,
                *amount,
                "2026-10-0".to_string() + &(i + 1).to_string(),
                format!("ROW {i}"),
            ),
        );
    }
    env.plaid.fail_next(Fault::MutationDuringPagination);
    let report = applied(env.sync(connection.id).await);
    assert_eq!(report.pages, 3, "five rows in pages of two");
    assert_eq!(report.restarts, 1);
    assert_eq!(report.added, 5);
    // page 1, page 2 (the mutation), then pages 1 to 3 again
    assert_eq!(env.plaid.calls("/transactions/sync"), 5);
    let requests = env.plaid.requests("/transactions/sync");
    assert!(
        requests[2].get("cursor").is_none(),
        "the restart begins at the first page's cursor: {:?}",
        requests[2]
    );

    let account = connection.accounts[0].account_id;
    let rows = env.live(account).await;
    let amounts: Vec<i64> = rows.iter().map(|r| r.amount).collect();
    assert_eq!(
        amounts,
        vec![-7210, 150000, -1, -1200, -350],
        "Plaid's sign inverted, no floats"
    );
    assert!(rows.iter().all(|r| r.source == "sync"));
    assert!(rows[0].external_id.as_deref().unwrap().ends_with(":t0"));

    // Nothing new: the next sync adds nothing and keeps the cursor moving.
    let cursor = env.cursor(connection.id).await;
    assert!(cursor.is_some());
    let again = applied(env.sync(connection.id).await);
    assert_eq!((again.added, again.present), (0, 0));
    assert_eq!(env.live(account).await.len(), 5);
}

#[tokio::test]
async fn a_pending_transaction_posts_with_a_new_amount_keeping_the_persons_edits() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let checking = env.plaid.account_ids(&item)[0].clone();
    let account = connection.accounts[0].account_id;
    env.plaid.add(
        &item,
        PlaidTx::new("p1", &checking, "25.00", "2026-10-30", "TST* BISTRO")
            .merchant("Bistro")
            .pending(),
    );
    applied(env.sync(connection.id).await);
    let pending = env.live(account).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].status.as_str(), pending[0].amount),
        ("pending", -2500)
    );
    let before = env.account(account).await;
    assert_eq!(
        before.balance, 120050,
        "the first sync sets the opening so that ours is the bank's"
    );
    assert_eq!(before.pending_balance, 120050 - 2500);

    // The person files it and writes a note: both fields are locked.
    let mut tx = env.person().await;
    let (category,): (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM categories WHERE tenant_id = $1 AND name = 'Meals'")
            .bind(env.tenant.as_uuid())
            .fetch_one(tx.conn())
            .await
            .unwrap();
    env.ledger
        .update_transaction(
            &mut tx,
            pending[0].id,
            None,
            TransactionChanges {
                category_id: Some(Some(category)),
                notes: Some(Some("team lunch".into())),
                ..TransactionChanges::default()
            },
            Editor::Person,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // It posts a day later with the tip: the pending id is removed, the posted one added.
    env.plaid.remove(&item, "p1");
    env.plaid.add(
        &item,
        PlaidTx::new("t1", &checking, "30.00", "2026-10-31", "BISTRO BERLIN")
            .merchant("Bistro")
            .replacing("p1"),
    );
    let report = applied(env.sync(connection.id).await);
    assert_eq!((report.posted, report.added, report.removed), (1, 0, 0));
    let rows = env.rows(account).await;
    assert_eq!(rows.len(), 1, "one row, never two: {rows:?}");
    let posted = &rows[0];
    assert_eq!(posted.id, pending[0].id, "the same transaction, now posted");
    assert_eq!((posted.status.as_str(), posted.amount), ("posted", -3000));
    assert_eq!(
        posted.date,
        chrono::NaiveDate::from_ymd_opt(2026, 10, 31).unwrap()
    );
    assert_eq!(posted.merchant.as_deref(), Some("Bistro"));
    assert_eq!(
        posted.category_id,
        Some(category),
        "the person's category stays"
    );
    assert_eq!(posted.notes.as_deref(), Some("team lunch"));
    assert!(posted.external_id.as_deref().unwrap().ends_with(":t1"));
    let after = env.account(account).await;
    assert_eq!(
        (after.balance, after.pending_balance),
        (120050 - 3000, 120050 - 3000)
    );

    // The bank still says 1200.50: the drift is shown and written once.
    let view = env.connection(connection.id).await;
    assert_eq!(view.accounts[0].drift, 3000);
    assert_eq!(view.accounts[0].reported_balance, Some(120050));
    assert_eq!(view.accounts[0].computed_balance, 117050);
    assert_eq!(env.events("bank.balance_drift").await.len(), 1);
    applied(env.sync(connection.id).await);
    assert_eq!(
        env.events("bank.balance_drift").await.len(),
        1,
        "the same drift is not written again"
    );
    env.plaid.set_balance(&item, &checking, "1170.50");
    applied(env.sync(connection.id).await);
    let drifts = env.events("bank.balance_drift").await;
    assert_eq!(drifts.len(), 2);
    assert_eq!(drifts[1]["drift"], 0, "back in agreement: {drifts:?}");
}

#[tokio::test]
async fn a_removed_transaction_is_soft_deleted_and_a_later_change_does_not_bring_it_back() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let checking = env.plaid.account_ids(&item)[0].clone();
    let account = connection.accounts[0].account_id;
    env.plaid.add(
        &item,
        PlaidTx::new("t1", &checking, "9.99", "2026-10-20", "SPOTIFY"),
    );
    env.plaid.add(
        &item,
        PlaidTx::new("t2", &checking, "5.00", "2026-10-21", "COFFEE"),
    );
    applied(env.sync(connection.id).await);
    env.plaid.remove(&item, "t1");
    env.plaid.modify(
        &item,
        PlaidTx::new("t2", &checking, "5.50", "2026-10-21", "COFFEE HOUSE"),
    );
    let report = applied(env.sync(connection.id).await);
    assert_eq!((report.removed, report.modified), (1, 1));
    let rows = env.rows(account).await;
    assert!(
        rows.iter()
            .find(|r| r.external_id.as_deref().unwrap().ends_with(":t1"))
            .unwrap()
            .deleted
    );
    let t2 = rows
        .iter()
        .find(|r| r.external_id.as_deref().unwrap().ends_with(":t2"))
        .unwrap();
    assert_eq!((t2.amount, t2.description.as_str()), (-550, "COFFEE HOUSE"));
    // The bank changes the removed one again: it stays deleted.
    env.plaid.modify(
        &item,
        PlaidTx::new("t1", &checking, "10.99", "2026-10-20", "SPOTIFY"),
    );
    let report = applied(env.sync(connection.id).await);
    assert_eq!((report.present, report.added), (1, 0));
    assert_eq!(env.live(account).await.len(), 1);
}

#[tokio::test]
async fn relinking_the_same_bank_account_adds_nothing_twice() {
    let env = Env::new().await;
    let account_of_bank = PlaidAccount::new("Checking", "depository", "checking");
    let first = env.plaid.create_item_with(vec![account_of_bank.clone()]);
    let item = env.plaid.item_id_of(&first);
    let connection = env.connect("plaid", Some(&first)).await;
    let account = connection.accounts[0].account_id;
    let plaid_account = account_of_bank.account_id.clone();
    // Two identical coffees on one day, synced apart, and a rent payment.
    env.plaid.add(
        &item,
        PlaidTx::new("a1", &plaid_account, "3.50", "2026-10-05", "CAFE"),
    );
    applied(env.sync(connection.id).await);
    env.plaid.add(
        &item,
        PlaidTx::new("a2", &plaid_account, "3.50", "2026-10-05", "CAFE"),
    );
    env.plaid.add(
        &item,
        PlaidTx::new("a3", &plaid_account, "1800.00", "2026-10-01", "RENT"),
    );
    applied(env.sync(connection.id).await);
    assert_eq!(env.live(account).await.len(), 3, "two coffees are two rows");
    env.banking
        .disconnect(env.tx().await, connection.id)
        .await
        .unwrap();

    // The same bank account again, through a new login: new item, new transaction ids.
    let second = env.plaid.create_item_with(vec![account_of_bank.clone()]);
    let item2 = env.plaid.item_id_of(&second);
    for (id, amount, date, name) in [
        ("b1", "3.50", "2026-10-05", "CAFE"),
        ("b2", "3.50", "2026-10-05", "CAFE"),
        ("b3", "1800.00", "2026-10-01", "RENT"),
        ("b4", "42.00", "2026-10-06", "NEW"),
    ] {
        env.plaid
            .add(&item2, PlaidTx::new(id, &plaid_account, amount, date, name));
    }
    let (relinked, _) = env
        .banking
        .connect(
            env.tx().await,
            "plaid",
            Some(&second),
            &[banking::AccountChoice {
                provider_account_id: plaid_account.clone(),
                account_id: Some(account),
            }],
            None,
            Fingerprint::new("test", b"relink"),
        )
        .await
        .unwrap();
    assert_eq!(relinked.accounts[0].account_id, account);
    let report = applied(env.sync(relinked.id).await);
    assert_eq!((report.linked, report.added), (3, 1), "{report:?}");
    assert_eq!(env.live(account).await.len(), 4);
}

#[tokio::test]
async fn a_sync_killed_halfway_applies_nothing_and_the_next_run_completes() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let checking = env.plaid.account_ids(&item)[0].clone();
    for i in 0..5 {
        env.plaid.add(
            &item,
            PlaidTx::new(
                format!("t{i}"),
                &checking,
                "1.00",
                "2026-10-10",
                format!("ROW {i}"),
            ),
        );
    }
    // Hold the connection's row so the sync stops between fetching and applying, then kill it.
    let mut holder = env.tx().await;
    sqlx::query("SELECT 1 FROM bank_connections WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
        .bind(env.tenant.as_uuid())
        .bind(connection.id)
        .execute(holder.conn())
        .await
        .unwrap();
    let banking = env.banking.clone();
    let (kdb, tenant, id) = (env.kdb.clone(), env.tenant, connection.id);
    let running = tokio::spawn(async move { banking.sync(&kdb, tenant, id, None).await });
    for _ in 0..200 {
        if env.plaid.calls("/transactions/sync") >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        env.plaid.calls("/transactions/sync"),
        3,
        "every page fetched"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    holder.rollback().await.unwrap();

    assert!(
        env.rows(connection.accounts[0].account_id).await.is_empty(),
        "nothing applied"
    );
    assert_eq!(
        env.cursor(connection.id).await,
        None,
        "the cursor did not move"
    );
    let report = applied(env.sync(connection.id).await);
    assert_eq!(report.added, 5);
    assert_eq!(env.live(connection.accounts[0].account_id).await.len(), 5);
}

#[tokio::test]
async fn two_syncs_at_once_add_each_transaction_once_and_requests_join_one_job() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let checking = env.plaid.account_ids(&item)[0].clone();
    for i in 0..7 {
        env.plaid.add(
            &item,
            PlaidTx::new(
                format!("t{i}"),
                &checking,
                "2.00",
                "2026-10-11",
                format!("ROW {i}"),
            ),
        );
    }
    let (a, b) = tokio::join!(
        env.banking.sync(&env.kdb, env.tenant, connection.id, None),
        env.banking.sync(&env.kdb, env.tenant, connection.id, None),
    );
    let reports: Vec<banking::SyncReport> =
        [a.unwrap(), b.unwrap()].into_iter().map(applied).collect();
    assert_eq!(reports.iter().map(|r| r.added).sum::<u64>(), 7);
    assert_eq!(
        reports.iter().map(|r| r.present).sum::<u64>(),
        0,
        "the later one saw the cursor move and started over from it: {reports:?}"
    );
    assert_eq!(
        env.live(connection.accounts[0].account_id).await.len(),
        7,
        "no duplicates"
    );

    // The connection's first sync is queued by connecting; asking again joins it.
    let mut tx = env.tx().await;
    let first = env
        .banking
        .request_sync(&mut tx, connection.id)
        .await
        .unwrap();
    let second = env
        .banking
        .request_sync(&mut tx, connection.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(Some(first), connection.sync_job_id);
}

#[tokio::test]
async fn a_login_the_bank_wants_again_is_recorded_and_repaired_through_update_mode() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let checking = env.plaid.account_ids(&item)[0].clone();
    env.plaid.fail_next(Fault::ItemLoginRequired);
    assert_eq!(
        env.sync(connection.id).await,
        SyncRun::Stopped("ITEM_LOGIN_REQUIRED".into())
    );
    let broken = env.connection(connection.id).await;
    assert_eq!(broken.status, ConnectionStatus::NeedsReauth);
    assert_eq!(
        broken.last_error.as_ref().unwrap().code,
        "ITEM_LOGIN_REQUIRED"
    );
    let failed = env.events("bank.sync_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["code"], "ITEM_LOGIN_REQUIRED");

    // The person repairs it: an update-mode link token, Link, then a sync.
    let token = env
        .banking
        .link_token(env.tx().await, "plaid", Some(connection.id))
        .await
        .unwrap();
    assert!(token.link_token.starts_with("link-"));
    let records = env.plaid.link_tokens();
    assert!(records.last().unwrap().update_mode, "{records:?}");
    env.plaid.add(
        &item,
        PlaidTx::new("t1", &checking, "4.00", "2026-10-12", "AFTER REPAIR"),
    );
    applied(env.sync(connection.id).await);
    let repaired = env.connection(connection.id).await;
    assert_eq!(repaired.status, ConnectionStatus::Active);
    assert!(repaired.last_error.is_none());
}

#[tokio::test]
async fn repeated_failures_make_the_connection_error_once_and_a_success_clears_it() {
    let env = Env::new().await;
    let (connection, _) = env.connect_plaid().await;
    for round in 1..=4 {
        env.plaid.fail_next(if round % 2 == 0 {
            Fault::RateLimited
        } else {
            Fault::ServerError
        });
        let e = env
            .banking
            .sync(&env.kdb, env.tenant, connection.id, None)
            .await
            .unwrap_err();
        let job = jobs::JobError::from(e);
        assert!(
            matches!(job, jobs::JobError::Retry(_)),
            "retried with backoff: {job:?}"
        );
        let status = env.connection(connection.id).await.status;
        let expected = if round >= 3 {
            ConnectionStatus::Error
        } else {
            ConnectionStatus::Active
        };
        assert_eq!(status, expected, "after {round} failures");
    }
    let failed = env.events("bank.sync_failed").await;
    assert_eq!(failed.len(), 1, "written when it became error: {failed:?}");
    assert_eq!(failed[0]["failures"], 3);
    applied(env.sync(connection.id).await);
    assert_eq!(
        env.connection(connection.id).await.status,
        ConnectionStatus::Active
    );
}

#[tokio::test]
async fn an_unofficial_currency_is_refused_not_guessed() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let checking = env.plaid.account_ids(&item)[0].clone();
    env.plaid.add(
        &item,
        PlaidTx::new("c1", &checking, "0.5", "2026-10-12", "BTC BUY").unofficial("BTC"),
    );
    env.plaid.add(
        &item,
        PlaidTx::new("c2", &checking, "1.00", "2026-10-12", "OK"),
    );
    let report = applied(env.sync(connection.id).await);
    assert_eq!((report.added, report.refused), (1, 1));
}

#[tokio::test]
async fn the_schedule_queues_each_due_connection_once_per_period() {
    let env = Env::new().await;
    let (due, _) = env.connect_plaid().await;
    let (waiting, _) = env.connect_plaid().await;
    applied(env.sync(due.id).await);
    applied(env.sync(waiting.id).await);
    let jobs = || async {
        let mut tx = env.tx().await;
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'banking.sync'",
        )
        .bind(env.tenant.as_uuid())
        .fetch_one(tx.conn())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        n
    };
    let before = jobs().await;
    env.banking.schedule(&env.kdb).await.unwrap();
    assert_eq!(jobs().await, before, "both synced just now: nothing is due");

    // Seven hours pass for both; one of them waits for a person.
    let mut tx = env.tx().await;
    sqlx::query(
        "UPDATE bank_connections SET last_synced_at = now() - interval '7 hours', sync_job_id = NULL
          WHERE tenant_id = $1",
    )
    .bind(env.tenant.as_uuid())
    .execute(tx.conn())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE bank_connections SET status = 'needs_reauth' WHERE tenant_id = $1 AND id = $2",
    )
    .bind(env.tenant.as_uuid())
    .bind(waiting.id)
    .execute(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(env.banking.schedule(&env.kdb).await.unwrap(), 1);
    // Another worker's tick in the same period: the job exists once.
    let mut tx = env.tx().await;
    sqlx::query("UPDATE bank_connections SET sync_job_id = NULL WHERE tenant_id = $1")
        .bind(env.tenant.as_uuid())
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    env.banking.schedule(&env.kdb).await.unwrap();
    assert_eq!(
        jobs().await,
        before + 1,
        "one job per connection and period"
    );
}

#[tokio::test]
async fn a_bank_row_that_matches_an_imported_one_is_linked_not_added() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let checking = env.plaid.account_ids(&item)[0].clone();
    let account = connection.accounts[0].account_id;
    // A statement imported first: two identical coffees and a rent payment, as a file
    // numbers them (the import's own path through the ledger).
    let usd = kernel::Currency::parse("USD").unwrap();
    let mut ordinals = ledger::Ordinals::default();
    let file: Vec<ledger::Incoming> = [
        ("2026-10-05", -350, "CAFE"),
        ("2026-10-05", -350, "CAFE"),
        ("2026-10-01", -180000, "RENT"),
    ]
    .into_iter()
    .map(|(date, amount, text)| {
        let date: chrono::NaiveDate = date.parse().unwrap();
        ledger::Incoming {
            date,
            value_date: None,
            amount,
            merchant: None,
            description: text.into(),
            status: ledger::TransactionStatus::Posted,
            external_id: None,
            fingerprint: ordinals.next(account, date, amount, usd, &format!(" {text}")),
        }
    })
    .collect();
    let mut tx = env.tx().await;
    env.ledger
        .ingest(
            &mut tx,
            account,
            ledger::TransactionSource::Import,
            None,
            &file,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();

    for (id, amount, date, name) in [
        ("a1", "3.50", "2026-10-05", "CAFE"),
        ("a2", "3.50", "2026-10-05", "CAFE"),
        ("a3", "1800.00", "2026-10-01", "RENT"),
        ("a4", "9.00", "2026-10-07", "NEW"),
    ] {
        env.plaid
            .add(&item, PlaidTx::new(id, &checking, amount, date, name));
    }
    let report = applied(env.sync(connection.id).await);
    assert_eq!((report.linked, report.added), (3, 1), "{report:?}");
    let rows = env.live(account).await;
    assert_eq!(rows.len(), 4);
    let imported: Vec<&crate::support::Row> =
        rows.iter().filter(|r| r.source == "import").collect();
    assert_eq!(imported.len(), 3);
    assert!(
        imported.iter().all(|r| r
            .external_id
            .as_deref()
            .is_some_and(|e| e.starts_with("plaid."))),
        "the imported rows now carry the bank's ids, so its changes find them: {imported:?}"
    );
    // The bank's later change reaches the imported row.
    env.plaid.modify(
        &item,
        PlaidTx::new("a3", &checking, "1850.00", "2026-10-01", "RENT"),
    );
    let report = applied(env.sync(connection.id).await);
    assert_eq!(report.modified, 1);
    let rent = env
        .live(account)
        .await
        .into_iter()
        .find(|r| r.description == "RENT")
        .unwrap();
    assert_eq!(rent.amount, -185000);
}
