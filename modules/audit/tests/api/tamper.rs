//! Tampering: the triggers refuse it; what gets past them, `verify` finds.

use std::io::BufReader;

use kernel::TenantId;
use sqlx::{Connection, PgConnection};

use crate::helpers::Env;

async fn exec(conn: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(|_| ())
}

/// As the owner, inside `tenant`'s context (FORCE row-level security applies to the owner).
async fn as_owner(env: &Env, tenant: TenantId, statements: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(&env.db.owner_url).await.unwrap();
    exec(
        &mut conn,
        format!(
            "BEGIN; SELECT set_config('balance.tenant_id', '{tenant}', true); {statements}; COMMIT"
        ),
    )
    .await
}

/// As a superuser with triggers off: an attacker with full access to the database.
async fn behind_the_back(env: &Env, statements: &str) {
    let mut conn = PgConnection::connect(&env.db.superuser_url).await.unwrap();
    exec(
        &mut conn,
        format!("SET session_replication_role = replica; {statements}"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn update_delete_and_truncate_are_refused_even_for_the_owner() {
    let env = Env::new().await;
    let tenant = env.tenant().await;
    env.record(tenant, 1, 3).await;
    audit::checkpoint_due(&env.kdb, env.log.keys())
        .await
        .unwrap();
    for statement in [
        "UPDATE events SET type = 'x.y' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 3",
        "TRUNCATE events CASCADE",
        "UPDATE audit_checkpoints SET key_id = 'x'",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE platform_events CASCADE",
    ] {
        let err = as_owner(&env, tenant, statement)
            .await
            .expect_err(statement);
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    assert!(env.verify(tenant).await.ok);
}

#[tokio::test]
async fn the_owner_may_purge_exactly_the_tenant_named_for_purging() {
    let env = Env::new().await;
    let (a, b) = (env.tenant().await, env.tenant().await);
    env.record(a, 1, 3).await;
    env.record(b, 1, 3).await;
    audit::checkpoint_due(&env.kdb, env.log.keys())
        .await
        .unwrap();
    let purge = |t: TenantId| {
        format!(
            "SELECT set_config('balance.purge_tenant', '{t}', true);
             DELETE FROM event_clients; DELETE FROM audit_checkpoints; DELETE FROM events; DELETE FROM audit_heads"
        )
    };
    // Named for purging, but the rows are another tenant's.
    let err = as_owner(&env, b, &purge(a)).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // The runtime role cannot, even with the setting.
    let mut runtime = PgConnection::connect(&env.db.runtime_url).await.unwrap();
    let denied = exec(
        &mut runtime,
        format!(
            "BEGIN; SELECT set_config('balance.tenant_id', '{a}', true); {}; COMMIT",
            purge(a)
        ),
    )
    .await;
    assert!(denied.is_err());
    // The owner, for the named tenant: allowed.
    as_owner(&env, a, &purge(a)).await.unwrap();
    assert!(env.list_all(a).await.is_empty());
    assert_eq!(env.list_all(b).await.len(), 3);
    assert!(env.verify(b).await.ok);
}

async fn chain_of(env: &Env, events: usize) -> TenantId {
    let tenant = env.tenant().await;
    env.record(tenant, events / 10, 10).await;
    tenant
}

#[tokio::test]
async fn verify_names_the_first_row_changed_behind_the_applications_back() {
    type Case = (&'static str, fn(TenantId) -> String, i64);
    let cases: Vec<Case> = vec![
        (
            "the canonical text edited",
            |t| {
                format!(
                    "UPDATE events SET canonical = replace(canonical, '\"i\":4', '\"i\":5') WHERE tenant_id = '{t}' AND seq = 5"
                )
            },
            5,
        ),
        (
            "a column edited",
            |t| {
                format!(
                    "UPDATE events SET type = 'test.thing.undone' WHERE tenant_id = '{t}' AND seq = 7"
                )
            },
            7,
        ),
        (
            "a row deleted",
            |t| format!("DELETE FROM events WHERE tenant_id = '{t}' AND seq = 12"),
            12,
        ),
        (
            "the last rows deleted",
            |t| format!("DELETE FROM events WHERE tenant_id = '{t}' AND seq > 18"),
            19,
        ),
        (
            "a row inserted at the end",
            |t| {
                format!(
            "INSERT INTO events SELECT tenant_id, 21, gen_random_uuid(), occurred_at, type, actor_kind, actor_id, source_agent,
                    resource_type, resource_id, request_id, canonical, hash_version, hash, hash
             FROM events WHERE tenant_id = '{t}' AND seq = 20")
            },
            21,
        ),
        (
            "a hash edited",
            |t| {
                format!("UPDATE events SET hash = sha256(hash) WHERE tenant_id = '{t}' AND seq = 3")
            },
            3,
        ),
    ];
    let env = Env::new().await;
    for (case, tamper, first_bad) in cases {
        let tenant = chain_of(&env, 20).await;
        assert!(env.verify(tenant).await.ok, "{case}: intact before");
        behind_the_back(&env, &tamper(tenant)).await;
        let v = env.verify(tenant).await;
        assert!(!v.ok, "{case}: not detected");
        assert_eq!(v.first_bad_seq, Some(first_bad), "{case}: {v:?}");
    }
}

#[tokio::test]
async fn a_chain_rewritten_consistently_by_the_owner_is_caught_by_the_signed_checkpoints() {
    let env = Env::new().await;
    let tenant = chain_of(&env, 1_200).await;
    assert_eq!(env.verify(tenant).await.checkpoints, 1);
    // The owner may disable its tables' triggers, then rewrite history and recompute every
    // hash after it so the chain itself is consistent again.
    as_owner(
        &env,
        tenant,
        "ALTER TABLE events DISABLE TRIGGER events_append_only;
         UPDATE events SET canonical = replace(canonical, '\"type\":\"test.thing.happened\"', '\"type\":\"test.thing.undone\"'),
                           type = 'test.thing.undone' WHERE seq = 500;
         DO $$
         DECLARE r record; prev bytea;
         BEGIN
           SELECT hash INTO prev FROM events WHERE seq = 499;
           FOR r IN SELECT seq, canonical FROM events WHERE seq >= 500 ORDER BY seq LOOP
             UPDATE events SET prev_hash = prev, hash = sha256(prev || convert_to(r.canonical, 'UTF8')) WHERE seq = r.seq;
             SELECT hash INTO prev FROM events WHERE seq = r.seq;
           END LOOP;
           UPDATE audit_heads SET hash = prev;
         END $$;
         ALTER TABLE events ENABLE TRIGGER events_append_only",
    )
    .await
    .unwrap();
    let v = env.verify(tenant).await;
    assert!(!v.ok, "{v:?}");
    assert_eq!(
        v.first_bad_seq,
        Some(1_000),
        "the checkpoint at 1,000 no longer matches: {v:?}"
    );

    // Removing the checkpoint too is caught: one must exist every 1,000 events.
    as_owner(
        &env,
        tenant,
        "ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only;
         DELETE FROM audit_checkpoints;
         ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_append_only",
    )
    .await
    .unwrap();
    let v = env.verify(tenant).await;
    assert_eq!((v.ok, v.first_bad_seq), (false, Some(1_000)), "{v:?}");
}

#[tokio::test]
async fn an_export_of_200000_events_streams_in_batches_and_verifies_offline() {
    use futures_util::StreamExt;

    let env = Env::new().await;
    let tenant = env.tenant().await;
    // 200 units of work of 1,000 events (bulk writers record summaries; this is a stress).
    env.record(tenant, 200, 1_000).await;

    let tx = kernel::TenantTx::begin(&env.kdb, tenant, kernel::Actor::System)
        .await
        .unwrap();
    let mut stream = std::pin::pin!(audit::export(tx));
    let path = std::env::temp_dir().join(format!("audit-export-{tenant}.ndjson"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (mut chunks, mut largest) = (0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        largest = largest.max(chunk.lines().count());
        chunks += 1;
        std::io::Write::write_all(&mut file, chunk.as_bytes()).unwrap();
    }
    drop(file);
    assert!(
        largest <= 1_000 + 1 + 200,
        "no chunk holds more than a batch (plus header and checkpoints): {largest}"
    );
    assert!(chunks >= 200);

    let keys = env.log.keys().public_keys();
    let v = audit::verify_export(
        BufReader::new(std::fs::File::open(&path).unwrap()),
        keys.clone(),
    )
    .unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!((v.checked, v.checkpoints), (200_000, 200));

    // One byte changed in the file is found.
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen(r#"\"i\":7}"#, r#"\"i\":8}"#, 1);
    assert_ne!(tampered, text);
    let v = audit::verify_export(BufReader::new(tampered.as_bytes()), keys.clone()).unwrap();
    assert_eq!((v.ok, v.first_bad_seq), (false, Some(8)));
    // Without the right keys, checkpoints do not verify.
    let wrong = audit::Keys::from_seeds([("test-1", &[99u8; 32][..])])
        .unwrap()
        .public_keys();
    let v = audit::verify_export(BufReader::new(text.as_bytes()), wrong).unwrap();
    assert_eq!((v.ok, v.first_bad_seq), (false, Some(1_000)));
    std::fs::remove_file(&path).unwrap();
}
