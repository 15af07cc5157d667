//! Provider tokens at rest: bound to their row, tamper-evident, re-sealed by a key rotation
//! with every connection working throughout, and never written anywhere in the clear.

use std::sync::Arc;

use banking::{BankTokens, BankingError, ConnectionStatus};
use testkit::plaid::PlaidTx;
use vault::rotation::{Ciphertexts, check_retire, reencrypt};

use crate::support::{Env, applied, key, vault_of};

#[tokio::test]
async fn a_token_copied_into_another_connections_or_tenants_row_does_not_open() {
    let env = Env::new().await;
    let (a, _) = env.connect_plaid().await;
    let (b, _) = env.connect_plaid().await;
    let other = testkit::seed::tenant(&env.kdb, "Other").await;
    let public = env.plaid.create_item();
    let c = env.connect_in(other, "plaid", Some(&public)).await;

    let stolen = env.ciphertext(env.tenant, a.id).await.unwrap();
    env.set_ciphertext(env.tenant, b.id, &stolen).await;
    env.set_ciphertext(other, c.id, &stolen).await;
    let e = env
        .banking
        .sync(&env.kdb, env.tenant, b.id, None)
        .await
        .unwrap_err();
    assert!(matches!(e, BankingError::Sealed(_)), "{e:?}");
    assert_eq!(env.connection(b.id).await.status, ConnectionStatus::Error);
    let e = env
        .banking
        .sync(&env.kdb, other, c.id, None)
        .await
        .unwrap_err();
    assert!(matches!(e, BankingError::Sealed(_)), "{e:?}");
    // The rightful row still opens.
    applied(env.sync(a.id).await);
}

#[tokio::test]
async fn a_tampered_token_does_not_open() {
    let env = Env::new().await;
    let (a, _) = env.connect_plaid().await;
    let mut sealed = env.ciphertext(env.tenant, a.id).await.unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    env.set_ciphertext(env.tenant, a.id, &sealed).await;
    let e = env
        .banking
        .sync(&env.kdb, env.tenant, a.id, None)
        .await
        .unwrap_err();
    assert!(matches!(e, BankingError::Sealed(_)), "{e:?}");
}

#[tokio::test]
async fn rotation_reseals_every_token_and_every_connection_keeps_working() {
    let env = Env::new().await;
    let mut connections = Vec::new();
    for _ in 0..3 {
        connections.push(env.connect_plaid().await);
    }
    let sandbox = env
        .connect("sandbox", Some("sandbox-public-00000000000000aa"))
        .await;
    // Step 1: k2 deployed second (decrypt only); step 2: promoted first.
    let promoted = vault_of(&[key("k2", 2), key("k1", 1)]);
    let during = env.banking_with(promoted.clone());
    let kinds: Vec<Arc<dyn Ciphertexts>> = vec![Arc::new(BankTokens(during.clone()))];
    assert_eq!(
        check_retire(&env.kdb, &kinds, "k1").await.unwrap(),
        vec![("bank_tokens".to_string(), 4)]
    );
    // While it runs, both keys open everything (a half-done rotation is readable).
    let mut shares = Vec::new();
    let summary = reencrypt(&env.kdb, &promoted, &kinds, |s| shares.push(s))
        .await
        .unwrap();
    assert_eq!(summary.kinds, vec![("bank_tokens".to_string(), 4, 0)]);
    assert_eq!(shares.last(), Some(&1.0));
    assert_eq!(
        check_retire(&env.kdb, &kinds, "k1").await.unwrap(),
        vec![("bank_tokens".to_string(), 0)]
    );
    // A second run finds nothing to do.
    let again = reencrypt(&env.kdb, &promoted, &kinds, |_| {})
        .await
        .unwrap();
    assert_eq!(again.resealed(), 0);
    assert_eq!(env.events("bank.tokens_reencrypted").await.len(), 1);

    // Step 3: k1 leaves the ring; every connection still syncs.
    let after = env.banking_with(vault_of(&[key("k2", 2)]));
    for (connection, item) in &connections {
        let checking = env.plaid.account_ids(item)[0].clone();
        env.plaid.add(
            item,
            PlaidTx::new(
                format!("{item}-t"),
                &checking,
                "1.00",
                "2026-10-10",
                "AFTER ROTATION",
            ),
        );
        let run = after
            .sync(&env.kdb, env.tenant, connection.id, None)
            .await
            .unwrap();
        assert_eq!(applied(run).added, 1);
    }
    applied(
        after
            .sync(&env.kdb, env.tenant, sandbox.id, None)
            .await
            .unwrap(),
    );
    // And the old ring alone can no longer open them: the rotation really re-sealed.
    let e = env
        .banking
        .sync(&env.kdb, env.tenant, connections[0].0.id, None)
        .await
        .unwrap_err();
    assert!(matches!(e, BankingError::Sealed(_)), "{e:?}");
}

#[tokio::test]
async fn no_token_text_in_responses_events_jobs_or_logs() {
    let logs = testkit::logs::capture();
    let env = Env::new().await;
    let public = env.plaid.create_item();
    let item = env.plaid.item_id_of(&public);
    let connection = env.connect("plaid", Some(&public)).await;
    let access: Vec<String> = env
        .plaid
        .requests("/accounts/get")
        .iter()
        .filter_map(|r| r["access_token"].as_str().map(str::to_string))
        .collect();
    let access = access
        .first()
        .expect("the client sent the access token")
        .clone();
    let checking = env.plaid.account_ids(&item)[0].clone();
    env.plaid.add(
        &item,
        PlaidTx::new("t1", &checking, "1.00", "2026-10-10", "ROW"),
    );
    applied(env.sync(connection.id).await);
    env.plaid
        .fail_next(testkit::plaid::Fault::ItemLoginRequired);
    env.sync(connection.id).await;
    env.banking
        .disconnect(env.tx().await, connection.id)
        .await
        .unwrap();

    let shown = serde_json::to_string(&env.connection(connection.id).await).unwrap();
    let written = env.everything_written().await;
    let logged = logs.text();
    for (what, text) in [
        ("the API", &shown),
        ("events and jobs", &written),
        ("logs", &logged),
    ] {
        assert!(!text.contains(&access), "the access token is in {what}");
        assert!(!text.contains(&public), "the public token is in {what}");
        assert!(
            !text.contains(testkit::plaid::SECRET),
            "the Plaid secret is in {what}"
        );
    }
    assert_eq!(
        env.ciphertext(env.tenant, connection.id).await,
        None,
        "dropped on disconnect"
    );
    assert_eq!(
        env.plaid.calls("/item/remove"),
        1,
        "revoked at the provider"
    );
}
