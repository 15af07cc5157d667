//! The built-in sandbox bank end to end: a connection, ninety days of history, days that
//! pass (pending rows posting, changes, removals), and a re-link, without one duplicate.

use std::collections::HashSet;

use kernel::idempotency::Fingerprint;

use crate::support::{Env, applied};

const SEED: &str = "sandbox-public-00000000000000b7";

async fn no_duplicates(env: &Env, account: uuid::Uuid) -> usize {
    let live = env.live(account).await;
    let ids: HashSet<&str> = live
        .iter()
        .map(|r| r.external_id.as_deref().unwrap())
        .collect();
    assert_eq!(ids.len(), live.len(), "a provider id twice among live rows");
    live.len()
}

#[tokio::test]
async fn days_pass_without_one_duplicate_and_the_balances_agree() {
    let env = Env::new().await;
    let connection = env.connect("sandbox", Some(SEED)).await;
    assert_eq!(connection.accounts.len(), 2);
    let report = applied(env.sync(connection.id).await);
    assert!(report.added > 90, "ninety days of a business: {report:?}");
    for account in &connection.accounts {
        let n = no_duplicates(&env, account.account_id).await;
        assert!(n > 0);
    }
    let checking = connection.accounts[0].account_id;
    let first = env.connection(connection.id).await;
    assert_eq!(first.accounts[0].drift, 0, "calibrated on the first sync");
    let pending_before = env
        .live(checking)
        .await
        .iter()
        .filter(|r| r.status == "pending")
        .count()
        + env
            .live(connection.accounts[1].account_id)
            .await
            .iter()
            .filter(|r| r.status == "pending")
            .count();
    assert!(pending_before > 0, "recent card spend is pending");

    let mut posted = 0;
    for _ in 0..6 {
        {
            let mut today = env.today.lock().unwrap();
            *today = today.succ_opt().unwrap();
        }
        let report = applied(env.sync(connection.id).await);
        posted += report.posted;
        for account in &connection.accounts {
            no_duplicates(&env, account.account_id).await;
        }
        let view = env.connection(connection.id).await;
        for account in &view.accounts {
            assert_eq!(
                account.drift, 0,
                "ours is the bank's after every day: {account:?}"
            );
        }
    }
    assert!(posted > 0, "pending rows posted as days passed");
}

#[tokio::test]
async fn reconnecting_the_same_sandbox_bank_adds_nothing() {
    let env = Env::new().await;
    let connection = env.connect("sandbox", Some(SEED)).await;
    applied(env.sync(connection.id).await);
    let before: Vec<usize> = {
        let mut v = Vec::new();
        for a in &connection.accounts {
            v.push(no_duplicates(&env, a.account_id).await);
        }
        v
    };
    env.banking
        .disconnect(env.tx().await, connection.id)
        .await
        .unwrap();
    let choices: Vec<banking::AccountChoice> = connection
        .accounts
        .iter()
        .map(|a| banking::AccountChoice {
            provider_account_id: a.provider_account_id.clone(),
            account_id: Some(a.account_id),
        })
        .collect();
    let (again, _) = env
        .banking
        .connect(
            env.tx().await,
            "sandbox",
            Some(SEED),
            &choices,
            None,
            Fingerprint::new("t", b"again"),
        )
        .await
        .unwrap();
    let report = applied(env.sync(again.id).await);
    assert_eq!(report.added, 0, "{report:?}");
    for (a, n) in connection.accounts.iter().zip(before) {
        assert_eq!(no_duplicates(&env, a.account_id).await, n);
    }
}
