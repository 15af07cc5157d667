//! Appending: one unbroken, gapless chain per tenant, whatever the concurrency.

use std::sync::Arc;

use audit::{NewEvent, Record};
use kernel::{Actor, RequestContext, TenantTx};

use crate::helpers::Env;

#[tokio::test]
async fn events_form_a_gapless_chain_that_verifies() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    env.record(tenant, 5, 3).await;
    let v = env.verify(tenant).await;
    assert!(v.ok, "{v:?}");
    assert_eq!((v.checked, v.first_bad_seq), (15, None));
    let events = env.list_all(tenant).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=15).rev().collect::<Vec<_>>(),
        "newest first, no gap"
    );
    assert_eq!(
        events.last().unwrap().prev_hash,
        "0".repeat(64),
        "the first event chains from zeros"
    );
    assert!(events.windows(2).all(|w| w[0].prev_hash == w[1].hash));
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_no_event_and_no_gap() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    env.record(tenant, 1, 2).await;
    {
        let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
            .await
            .unwrap();
        tx.record(NewEvent::new("test.thing.lost"));
        // dropped: rolled back
    }
    env.record(tenant, 1, 1).await;
    let events = env.list_all(tenant).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1]);
    assert!(events.iter().all(|e| e.kind != "test.thing.lost"));
    assert!(env.verify(tenant).await.ok);
}

#[tokio::test]
async fn sixteen_parallel_writers_produce_one_unbroken_chain() {
    let env = Arc::new(Env::new().await);
    let tenant = env.tenant().await;
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let env = env.clone();
            tokio::spawn(async move { env.record(tenant, 200, 1).await })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let v = env.verify(tenant).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checked, 3_200);
    assert_eq!(v.checkpoints, 3, "signed at 1,000, 2,000 and 3,000");
}

#[tokio::test]
async fn an_event_carries_actor_request_and_client_but_the_hash_excludes_the_client() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let user = kernel::UserId::new();
    let ctx = Arc::new(RequestContext::http(
        "req-7".into(),
        "/x".into(),
        Some("198.51.100.4".parse().unwrap()),
        Some("ua/1".into()),
    ));
    let kdb = env.kdb.clone();
    ctx.scope(async move {
        let mut tx = TenantTx::begin(&kdb, tenant, Actor::User(user))
            .await
            .unwrap();
        tx.record(
            NewEvent::new("member.role_changed")
                .resource("member", user)
                .payload(serde_json::json!({"roles": ["admin"]})),
        );
        tx.commit().await.unwrap();
    })
    .await;
    let e = &env.list_all(tenant).await[0];
    assert_eq!(
        (e.kind.as_str(), e.actor.kind.as_str(), e.actor.id),
        ("member.role_changed", "user", Some(user.as_uuid()))
    );
    assert_eq!(
        (
            e.request_id.as_deref(),
            e.ip.as_deref(),
            e.user_agent.as_deref()
        ),
        (Some("req-7"), Some("198.51.100.4"), Some("ua/1"))
    );
    assert_eq!(e.source_agent, "balance");
    assert_eq!(e.payload, serde_json::json!({"roles": ["admin"]}));

    // Erasing the client (the documented exception) leaves the chain intact.
    let mut owner = <sqlx::PgConnection as sqlx::Connection>::connect(&env.db.owner_url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('balance.tenant_id', '{tenant}', true); DELETE FROM event_clients; COMMIT"
    )))
    .execute(&mut owner)
    .await
    .unwrap();
    assert!(env.list_all(tenant).await[0].ip.is_none());
    assert!(env.verify(tenant).await.ok);
}

#[tokio::test]
async fn payloads_with_an_email_address_or_a_fraction_are_refused_and_nothing_is_written() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    for payload in [
        serde_json::json!({"email": "ada@example.com"}),
        serde_json::json!({"nested": {"list": ["x", "Ada@Example.com"]}}),
        serde_json::json!({"amount": 1.5}),
        serde_json::json!({"big": 9_007_199_254_740_993u64}),
    ] {
        let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
            .await
            .unwrap();
        tx.record(NewEvent::new("test.thing.happened").payload(payload.clone()));
        assert!(tx.commit().await.is_err(), "{payload}");
    }
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    tx.record(NewEvent::new("Not A Type"));
    assert!(tx.commit().await.is_err());
    assert!(env.list_all(tenant).await.is_empty());
}

#[tokio::test]
async fn events_without_a_tenant_go_to_the_platform_chain() {
    let env = Env::new().await;
    for _ in 0..3 {
        let mut tx = kernel::SystemTx::begin(&env.kdb, Actor::System)
            .await
            .unwrap();
        tx.record(NewEvent::new("auth.signed_up").resource("user", kernel::UserId::new()));
        tx.commit().await.unwrap();
    }
    let mut tx = kernel::SystemTx::begin(&env.kdb, Actor::System)
        .await
        .unwrap();
    let v = audit::verify_platform(&mut tx, env.log.keys().public_keys())
        .await
        .unwrap();
    assert!(v.ok && v.checked == 3, "{v:?}");
}

#[tokio::test]
async fn one_tenants_events_never_appear_in_anothers_list_export_or_verify() {
    let env = Env::new().await;
    let (a, b) = (env.tenant().await, env.tenant().await);
    env.record(a, 3, 1).await;
    env.record(b, 2, 1).await;
    let (in_a, in_b) = (env.list_all(a).await, env.list_all(b).await);
    assert_eq!((in_a.len(), in_b.len()), (3, 2));
    assert!(in_a.iter().all(|e| !in_b.iter().any(|f| f.id == e.id)));
    let export_b = env.export(b).await;
    assert!(in_a.iter().all(|e| !export_b.contains(&e.id.to_string())));
    assert_eq!(
        export_b
            .lines()
            .filter(|l| l.contains("\"kind\":\"event\""))
            .count(),
        2
    );
    assert_eq!(env.verify(b).await.checked, 2);
}

#[tokio::test]
async fn hourly_checkpoints_sign_each_chain_with_new_events_once() {
    let env = Env::new().await;
    let (a, b) = (env.tenant().await, env.tenant().await);
    env.record(a, 1, 5).await;
    let _ = b;
    let signed = audit::checkpoint_due(&env.kdb, env.log.keys())
        .await
        .unwrap();
    assert_eq!(
        signed, 1,
        "a has new events; b has none; the platform chain is empty"
    );
    assert_eq!(
        audit::checkpoint_due(&env.kdb, env.log.keys())
            .await
            .unwrap(),
        0,
        "nothing new since"
    );
    let v = env.verify(a).await;
    assert!(v.ok && v.checkpoints == 1, "{v:?}");
}

#[tokio::test]
async fn the_list_filters_by_type_actor_resource_and_time_and_pages_newest_first() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    let (ada, bob) = (kernel::UserId::new(), kernel::UserId::new());
    let started = chrono::Utc::now();
    for i in 0..6 {
        let actor = if i % 2 == 0 {
            Actor::User(ada)
        } else {
            Actor::User(bob)
        };
        let mut tx = TenantTx::begin(&env.kdb, tenant, actor).await.unwrap();
        let kind = if i < 3 {
            "member.invited"
        } else {
            "member.removed"
        };
        tx.record(NewEvent::new(kind).resource("member", format!("m{}", i % 3)));
        tx.commit().await.unwrap();
    }
    let list = |filter: audit::EventFilter, limit: u32, after: Option<kernel::Position>| {
        let env = &env;
        async move {
            let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
                .await
                .unwrap();
            let params = kernel::PageParams { limit, after };
            audit::list(&mut tx, &filter, &params)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    let f = audit::EventFilter::default;
    assert_eq!(
        list(
            audit::EventFilter {
                kind: Some("member.removed".into()),
                ..f()
            },
            50,
            None
        )
        .await,
        [6, 5, 4]
    );
    assert_eq!(
        list(
            audit::EventFilter {
                actor_id: Some(bob.as_uuid()),
                ..f()
            },
            50,
            None
        )
        .await,
        [6, 4, 2]
    );
    assert_eq!(
        list(
            audit::EventFilter {
                resource_type: Some("member".into()),
                resource_id: Some("m1".into()),
                ..f()
            },
            50,
            None
        )
        .await,
        [5, 2]
    );
    assert_eq!(
        list(
            audit::EventFilter {
                from: Some(started),
                ..f()
            },
            50,
            None
        )
        .await
        .len(),
        6
    );
    assert!(
        list(
            audit::EventFilter {
                to: Some(started),
                ..f()
            },
            50,
            None
        )
        .await
        .is_empty()
    );
    // Keyset: a page of 2 ends with 5; fetch_limit brings one more to tell there is more.
    assert_eq!(list(f(), 2, None).await, [6, 5, 4]);
    let after = kernel::Position {
        key: serde_json::json!(5),
        id: uuid::Uuid::nil(),
    };
    assert_eq!(list(f(), 2, Some(after)).await, [4, 3, 2]);
}
