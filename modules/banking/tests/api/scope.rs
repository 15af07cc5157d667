//! Account scope (DESIGN.md §8): a caller confined to some accounts sees only the
//! connections that feed accounts they see, and cannot connect a bank.

use banking::BankingError;
use kernel::{Keyset, idempotency::Fingerprint};

use crate::support::Env;

#[tokio::test]
async fn a_caller_confined_to_other_accounts_sees_no_connection_and_cannot_connect() {
    let env = Env::new().await;
    let (connection, _) = env.connect_plaid().await;
    let elsewhere = uuid::Uuid::now_v7();
    let confined = || async {
        let mut tx = env.person().await;
        tx.scope_accounts(&[elsewhere]).await.unwrap();
        tx
    };

    let mut tx = confined().await;
    let cursors = kernel::CursorSigner::from_pepper(&[1; 32]);
    let page = Keyset::parse(&cursors, "t", env.tenant, None, None).unwrap();
    assert!(
        env.banking
            .connections(&mut tx, &page)
            .await
            .unwrap()
            .data
            .is_empty()
    );
    assert!(matches!(
        env.banking.connection(&mut tx, connection.id).await,
        Err(BankingError::NotFound)
    ));
    assert!(matches!(
        env.banking.request_sync(&mut tx, connection.id).await,
        Err(BankingError::NotFound)
    ));
    tx.commit().await.unwrap();
    let e = env
        .banking
        .disconnect(confined().await, connection.id)
        .await
        .unwrap_err();
    assert!(matches!(e, BankingError::NotFound), "{e:?}");
    let public = env.plaid.create_item();
    let e = env
        .banking
        .connect(
            confined().await,
            "plaid",
            Some(&public),
            &[],
            None,
            Fingerprint::new("t", b""),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BankingError::Scoped), "{e:?}");

    // Confined to exactly the connection's accounts: it is theirs to see.
    let mut tx = env.person().await;
    let mine: Vec<uuid::Uuid> = connection.accounts.iter().map(|a| a.account_id).collect();
    tx.scope_accounts(&mine).await.unwrap();
    assert_eq!(
        env.banking
            .connection(&mut tx, connection.id)
            .await
            .unwrap()
            .id,
        connection.id
    );
    tx.commit().await.unwrap();
}
