//! Identity's rules called with the caller's handle, the way a job, the bot or the CLI
//! joins them to a unit of work of its own: no HTTP in between.

use std::sync::Arc;

use audit::{AuditLog, Keys};
use identity::{Identity, IdentityConfig, IdentityError};
use kernel::{Db, Email, Problem, UserTx};
use testkit::db::TestDb;

async fn env() -> (TestDb, Db, Identity) {
    let db = TestDb::with_migrations().await.unwrap();
    let keys = Keys::from_seeds([("test-1", &[11u8; 32][..])]).unwrap();
    let audit: Arc<dyn kernel::CommitHook> = Arc::new(AuditLog::new(keys));
    let kdb = db.kernel_db([audit]).await.unwrap();
    let identity = Identity::new(
        kdb.clone(),
        IdentityConfig::ephemeral("http://balance.test".parse().unwrap()),
    );
    (db, kdb, identity)
}

#[tokio::test]
async fn a_profile_change_joins_the_callers_unit_of_work_and_rolls_back_with_it() {
    let (_db, kdb, identity) = env().await;
    let user = identity
        .signup(
            Email::parse("ada@example.com").unwrap(),
            "correct horse battery staple".into(),
            "Ada".into(),
            "UTC".into(),
        )
        .await
        .unwrap();

    // Rolled back with the caller's transaction: nothing changed.
    let mut tx = UserTx::begin(&kdb, user.id).await.unwrap();
    let me = identity
        .update_me(&mut tx, Some("Ada L.".into()), None)
        .await
        .unwrap();
    assert_eq!(me.name, "Ada L.");
    tx.rollback().await.unwrap();
    let mut tx = UserTx::begin(&kdb, user.id).await.unwrap();
    assert_eq!(identity.me(&mut tx).await.unwrap().name, "Ada");

    // Committed by the caller: it holds.
    identity
        .update_me(&mut tx, None, Some("Europe/Berlin".into()))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = UserTx::begin(&kdb, user.id).await.unwrap();
    let me = identity.me(&mut tx).await.unwrap();
    assert_eq!(
        (me.name.as_str(), me.time_zone.as_str()),
        ("Ada", "Europe/Berlin")
    );
    assert!(me.tenants.is_empty() && !me.totp_enabled && !me.email_verified);
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_inside_the_callers_transaction() {
    let (_db, kdb, identity) = env().await;
    let email = "grace@example.com";
    let user = identity
        .signup(
            Email::parse(email).unwrap(),
            "correct horse battery staple".into(),
            "Grace".into(),
            "UTC".into(),
        )
        .await
        .unwrap();
    let pair = identity
        .login(email, "correct horse battery staple".into(), None, None)
        .await
        .unwrap();
    let principal = identity.authenticate(&pair.access_token).await.unwrap();

    let mut tx = UserTx::begin(&kdb, user.id).await.unwrap();
    let sessions = identity
        .sessions(&mut tx, Some(principal.session_id))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].current);
    identity
        .revoke_session(&mut tx, principal.session_id, "revoked")
        .await
        .unwrap();
    let again = identity
        .revoke_session(&mut tx, principal.session_id, "revoked")
        .await
        .unwrap_err();
    assert!(matches!(again, IdentityError::NotFound), "{again:?}");
    tx.commit().await.unwrap();

    let refused = identity.authenticate(&pair.access_token).await.unwrap_err();
    assert_eq!(Problem::from(refused).code(), "unauthorized");
}

#[tokio::test]
async fn a_verification_link_and_a_reset_link_work_inside_the_callers_transaction() {
    let (_db, kdb, identity) = env().await;
    let email = "hopper@example.com";
    let user = identity
        .signup(
            Email::parse(email).unwrap(),
            "correct horse battery staple".into(),
            "Grace".into(),
            "UTC".into(),
        )
        .await
        .unwrap();
    let verify = testkit::seed::mailed_token(&kdb, email, "verify_email").await;
    let mut tx = kernel::SystemTx::begin(&kdb, kernel::Actor::System)
        .await
        .unwrap();
    assert_eq!(
        identity.verify_email_in(&mut tx, &verify).await.unwrap(),
        user.id
    );
    tx.commit().await.unwrap();
    let mut mine = UserTx::begin(&kdb, user.id).await.unwrap();
    assert!(identity.me(&mut mine).await.unwrap().email_verified);
    drop(mine);

    let pair = identity
        .login(email, "correct horse battery staple".into(), None, None)
        .await
        .unwrap();
    identity.request_reset(email).await.unwrap();
    let reset = testkit::seed::mailed_token(&kdb, email, "password_reset").await;
    let mut tx = kernel::SystemTx::begin(&kdb, kernel::Actor::System)
        .await
        .unwrap();
    let weak = identity
        .confirm_reset_in(&mut tx, &reset, "password".into())
        .await
        .unwrap_err();
    assert!(matches!(weak, IdentityError::Invalid(_)), "{weak:?}");
    drop(tx);
    let mut tx = kernel::SystemTx::begin(&kdb, kernel::Actor::System)
        .await
        .unwrap();
    identity
        .confirm_reset_in(&mut tx, &reset, "a completely new passphrase".into())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        identity.authenticate(&pair.access_token).await.is_err(),
        "every session was signed out"
    );
    assert!(
        identity
            .login(email, "a completely new passphrase".into(), None, None)
            .await
            .is_ok()
    );
}
