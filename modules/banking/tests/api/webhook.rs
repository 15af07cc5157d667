//! Plaid's webhooks: verified against the exact body, coalesced per item.

use banking::{BankingError, ConnectionStatus, ProviderError};
use http::{HeaderMap, HeaderValue};

use crate::support::Env;

fn signed(jwt: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("plaid-verification", HeaderValue::from_str(jwt).unwrap());
    headers
}

fn bad_webhook(result: Result<Option<uuid::Uuid>, BankingError>) -> String {
    match result {
        Err(BankingError::Provider(ProviderError::BadWebhook(reason))) => reason,
        other => panic!("expected a refused webhook, got {other:?}"),
    }
}

#[tokio::test]
async fn a_verified_webhook_asks_for_one_sync_and_a_replay_joins_it() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    // The first sync (queued by connecting) is done; the webhook asks for the next.
    crate::support::applied(env.sync(connection.id).await);
    let body = env.plaid.sync_updates_available_body(&item);
    let headers = signed(&env.plaid.sign_webhook(&body));
    let job = env
        .banking
        .webhook("plaid", env.tenant, &headers, &body)
        .await
        .unwrap();
    let job = job.expect("a sync was asked for");
    let replayed = env
        .banking
        .webhook("plaid", env.tenant, &headers, &body)
        .await
        .unwrap();
    assert_eq!(
        replayed,
        Some(job),
        "the same webhook again joins the queued sync"
    );
    let again = env.plaid.sync_updates_available_body(&item);
    let other = env
        .banking
        .webhook(
            "plaid",
            env.tenant,
            &signed(&env.plaid.sign_webhook(&again)),
            &again,
        )
        .await
        .unwrap();
    assert_eq!(
        other,
        Some(job),
        "webhooks in a row are coalesced on the item"
    );
}

#[tokio::test]
async fn forged_tampered_stale_or_unsigned_webhooks_are_refused() {
    let env = Env::new().await;
    let (_, item) = env.connect_plaid().await;
    let body = env.plaid.sync_updates_available_body(&item);
    let forged = env
        .banking
        .webhook(
            "plaid",
            env.tenant,
            &signed(&env.plaid.forge_webhook(&body)),
            &body,
        )
        .await;
    bad_webhook(forged);
    let mut tampered = body.clone();
    tampered.push(b' ');
    let result = env
        .banking
        .webhook(
            "plaid",
            env.tenant,
            &signed(&env.plaid.sign_webhook(&body)),
            &tampered,
        )
        .await;
    bad_webhook(result);
    let stale_at = chrono::Utc::now().timestamp() - 6 * 60;
    let result = env
        .banking
        .webhook(
            "plaid",
            env.tenant,
            &signed(&env.plaid.sign_webhook_at(&body, stale_at)),
            &body,
        )
        .await;
    bad_webhook(result);
    let result = env
        .banking
        .webhook("plaid", env.tenant, &HeaderMap::new(), &body)
        .await;
    bad_webhook(result);
    // Nothing was queued by any of them beyond the connection's first sync.
    let mut tx = env.tx().await;
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'banking.sync'")
            .bind(env.tenant.as_uuid())
            .fetch_one(tx.conn())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn an_item_error_webhook_marks_the_connection_and_an_unknown_item_is_ignored() {
    let env = Env::new().await;
    let (connection, item) = env.connect_plaid().await;
    let body = env.plaid.item_error_body(&item, "ITEM_LOGIN_REQUIRED");
    let result = env
        .banking
        .webhook(
            "plaid",
            env.tenant,
            &signed(&env.plaid.sign_webhook(&body)),
            &body,
        )
        .await
        .unwrap();
    assert_eq!(result, None);
    assert_eq!(
        env.connection(connection.id).await.status,
        ConnectionStatus::NeedsReauth
    );
    let unknown = env.plaid.sync_updates_available_body("no-such-item");
    let result = env
        .banking
        .webhook(
            "plaid",
            env.tenant,
            &signed(&env.plaid.sign_webhook(&unknown)),
            &unknown,
        )
        .await
        .unwrap();
    assert_eq!(result, None);
}
