use kernel::{Actor, DisplayName, Keyset, RoleNames, TenantId, TenantTx, UserTx, auth::Authorize};
use tenancy::TenancyError;

use crate::helpers::Env;

fn roles(r: &[&str]) -> RoleNames {
    RoleNames::parse(
        "roles",
        &r.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn signer() -> kernel::CursorSigner {
    kernel::CursorSigner::from_pepper(b"tenancy service tests pepper 0123")
}

#[tokio::test]
async fn a_job_creates_a_tenant_for_a_person_who_then_lists_it_as_theirs() {
    let env = Env::new().await;
    let owner = testkit::seed::user(&env.kdb).await;
    let id = TenantId::new();
    let mut tx = TenantTx::begin(&env.kdb, id, Actor::System).await.unwrap();
    let name = DisplayName::parse("name", "  Acme Ltd ").unwrap();
    let created = env
        .tenancy
        .create(
            &mut tx,
            owner,
            &name,
            kernel::Currency::parse("EUR").unwrap(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (created.id, created.name.as_str(), created.plan.as_str()),
        (id, "Acme Ltd", "free")
    );
    assert_eq!(created.roles, ["owner"]);

    let mut mine = UserTx::begin(&env.kdb, owner).await.unwrap();
    let page = Keyset::first(&signer(), "list_tenants", owner, 50);
    let listed = env.tenancy.list_mine(&mut mine, &page).await.unwrap();
    assert_eq!(listed.data.len(), 1);
    assert_eq!(listed.data[0].id, id);
    assert!(!listed.has_more);
}

#[tokio::test]
async fn notifications_can_list_a_tenants_members_from_a_system_transaction() {
    let env = Env::new().await;
    let (tenant, users) = env
        .tenant_with(&[&["owner"], &["viewer"], &["accountant"]])
        .await;
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let first = env
        .tenancy
        .members(
            &mut tx,
            &Keyset::first(&signer(), "list_members", tenant, 2),
        )
        .await
        .unwrap();
    assert_eq!(
        first.data.iter().map(|m| m.user_id).collect::<Vec<_>>(),
        users[..2]
    );
    assert!(first.has_more && first.next_cursor.is_some());
    let rest = Keyset::parse(
        &signer(),
        "list_members",
        tenant,
        Some(2),
        first.next_cursor.as_deref(),
    )
    .unwrap();
    let second = env.tenancy.members(&mut tx, &rest).await.unwrap();
    assert_eq!(second.data[0].user_id, users[2]);
    assert!(!second.has_more);
}

#[tokio::test]
async fn the_last_owner_cannot_be_demoted_or_removed_even_by_balance_itself() {
    let env = Env::new().await;
    let (tenant, users) = env.tenant_with(&[&["owner"], &["admin"]]).await;
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let demoted = env
        .tenancy
        .update_member(&mut tx, users[0], None, &roles(&["admin"]))
        .await;
    assert!(
        matches!(demoted, Err(TenancyError::LastOwner)),
        "{demoted:?}"
    );
    let removed = env.tenancy.remove_member(&mut tx, users[0]).await;
    assert!(
        matches!(removed, Err(TenancyError::LastOwner)),
        "{removed:?}"
    );
    drop(tx);

    // With a second owner, the first may step down.
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    env.tenancy
        .update_member(&mut tx, users[1], None, &roles(&["owner"]))
        .await
        .unwrap();
    let stepped_down = env
        .tenancy
        .update_member(&mut tx, users[0], None, &roles(&["viewer"]))
        .await
        .unwrap();
    assert_eq!(stepped_down.roles, ["viewer"]);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_bot_acts_for_a_member_without_a_token_and_gets_the_same_answers() {
    let env = Env::new().await;
    let (tenant, users) = env
        .tenant_with(&[&["owner"], &["viewer"], &["admin"]])
        .await;
    let stranger = testkit::seed::user(&env.kdb).await;
    let code =
        |r: Result<TenantTx, kernel::Problem>| r.map(|_| ()).map_err(|p| p.code().to_string());

    // A member with the permission: the transaction acts as the person, through the bot.
    let mut tx = env
        .authz
        .member(Actor::Telegram(users[2]), tenant, "members:write")
        .await
        .unwrap();
    assert_eq!(tx.context().actor, Actor::Telegram(users[2]));
    let grants = tx.extensions().get::<access::Grants>().unwrap();
    assert_eq!(grants.roles(), ["admin"]);
    assert!(!grants.is_owner());
    // The decided grants are what the grant check uses: an admin grants accountant …
    env.tenancy
        .update_member(&mut tx, users[1], None, &roles(&["accountant"]))
        .await
        .unwrap();
    // … but never owner.
    let owner = env
        .tenancy
        .update_member(&mut tx, users[1], None, &roles(&["owner"]))
        .await
        .unwrap_err();
    assert!(matches!(owner, TenancyError::Access(_)), "{owner:?}");
    assert_eq!(kernel::Problem::from(owner).code(), "cannot_grant");
    drop(tx);

    // An owner who steps down in a unit of work grants no owner later in it.
    let mut tx = env
        .authz
        .member(Actor::User(users[0]), tenant, "members:write")
        .await
        .unwrap();
    env.tenancy
        .update_member(&mut tx, users[2], None, &roles(&["owner"]))
        .await
        .unwrap();
    env.tenancy
        .update_member(&mut tx, users[0], None, &roles(&["admin"]))
        .await
        .unwrap();
    let after = env
        .tenancy
        .update_member(&mut tx, users[1], None, &roles(&["owner"]))
        .await
        .unwrap_err();
    assert_eq!(
        kernel::Problem::from(after).code(),
        "cannot_grant",
        "the grants were re-read"
    );
    drop(tx);

    assert_eq!(
        code(
            env.authz
                .member(Actor::User(stranger), tenant, "tenant:read")
                .await
        ),
        Err("not_found".into()),
        "a stranger learns nothing"
    );
    assert_eq!(
        code(
            env.authz
                .member(Actor::User(users[1]), tenant, "members:write")
                .await
        ),
        Err("forbidden".into())
    );
    assert_eq!(
        code(env.authz.member(Actor::System, tenant, "tenant:read").await),
        Err("unauthorized".into()),
        "only a person is a member"
    );

    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    env.tenancy.delete(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        code(
            env.authz
                .member(Actor::User(users[0]), tenant, "members:write")
                .await
        ),
        Err("tenant_deleted".into())
    );
    assert!(
        env.authz
            .member(Actor::User(users[0]), tenant, "tenant:read")
            .await
            .is_ok(),
        "a deleted tenant stays readable"
    );
}

#[tokio::test]
async fn an_api_key_created_by_a_job_opens_its_tenant_and_is_listed_without_its_secret() {
    let env = Env::new().await;
    let (tenant, users) = env.tenant_with(&[&["owner"]]).await;
    let mut tx = env
        .authz
        .member(Actor::User(users[0]), tenant, "api_keys:write")
        .await
        .unwrap();
    let created = env
        .tenancy
        .create_api_key(
            &mut tx,
            tenancy::NewKey {
                name: DisplayName::parse("name", "ci").unwrap(),
                roles: roles(&["viewer"]),
                expires_at: None,
                account_ids: None,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let key_tx = env
        .authz
        .tenant(&created.secret, tenant, "tenant:read")
        .await
        .unwrap();
    assert_eq!(key_tx.context().actor, Actor::ApiKey(created.id));
    drop(key_tx);

    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let keys = env
        .tenancy
        .api_keys(
            &mut tx,
            &Keyset::first(&signer(), "list_api_keys", tenant, 50),
        )
        .await
        .unwrap();
    assert_eq!(keys.data.len(), 1);
    assert_eq!(keys.data[0].prefix, created.prefix);
    env.tenancy
        .revoke_api_key(&mut tx, created.id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        env.authz
            .tenant(&created.secret, tenant, "tenant:read")
            .await
            .map(|_| ())
            .unwrap_err()
            .code(),
        "unauthorized"
    );
}

#[tokio::test]
async fn an_invitation_sent_by_a_job_is_accepted_by_the_invitee_only_and_once() {
    let env = Env::new().await;
    let (tenant, _) = env.tenant_with(&[&["owner"]]).await;
    let invitee = testkit::seed::user(&env.kdb).await;
    let someone_else = testkit::seed::user(&env.kdb).await;
    let address = format!("{invitee}@example.com");
    let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::System)
        .await
        .unwrap();
    let invitation = env
        .tenancy
        .invite(
            &mut tx,
            &kernel::Email::parse(&address).unwrap(),
            &roles(&["viewer"]),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(invitation.roles, ["viewer"]);
    let token = testkit::seed::mailed_token(&env.kdb, &address, "invitation").await;

    let accept = |user| {
        let (env, token) = (&env, token.clone());
        async move {
            let (tenant, hashes) = env.tenancy.invitation_tenant(&token)?;
            let mut tx = TenantTx::begin(&env.kdb, tenant, Actor::User(user)).await?;
            let joined = env.tenancy.accept_invitation(&mut tx, &hashes).await?;
            tx.commit().await?;
            Ok::<_, TenancyError>(joined)
        }
    };
    let wrong = accept(someone_else).await.unwrap_err();
    assert!(
        matches!(wrong, TenancyError::InvitationEmailMismatch),
        "{wrong:?}"
    );
    let joined = accept(invitee).await.unwrap();
    assert_eq!(
        (joined.id, joined.roles.as_slice()),
        (tenant, &["viewer".to_string()][..])
    );
    let again = accept(invitee).await.unwrap_err();
    assert!(
        matches!(again, TenancyError::InvalidInvitation),
        "used once: {again:?}"
    );
    // A made-up token names no tenant.
    assert!(matches!(
        env.tenancy.invitation_tenant("bin_nonsense"),
        Err(TenancyError::InvalidInvitation)
    ));
}

#[tokio::test]
async fn a_rename_checks_the_version_it_was_given() {
    let env = Env::new().await;
    let (tenant, users) = env.tenant_with(&[&["owner"]]).await;
    let mut tx = env
        .authz
        .member(Actor::User(users[0]), tenant, "tenant:write")
        .await
        .unwrap();
    let before = env.tenancy.get(&mut tx).await.unwrap();
    let name = DisplayName::parse("name", "Acme GmbH").unwrap();
    let renamed = env
        .tenancy
        .rename(&mut tx, Some(before.version), &name)
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.version),
        ("Acme GmbH", before.version + 1)
    );
    assert_eq!(renamed.roles, ["owner"], "the acting person's roles");
    let stale = env
        .tenancy
        .rename(&mut tx, Some(before.version), &name)
        .await
        .unwrap_err();
    assert_eq!(kernel::Problem::from(stale).code(), "precondition_failed");
}

#[tokio::test]
async fn grant_checks_of_a_unit_of_work_use_the_decision_instead_of_reading_the_membership_again() {
    let env = Env::new().await;
    let (tenant, users) = env
        .tenant_with(&[&["owner"], &["admin"], &["viewer"]])
        .await;
    let mut tx = env
        .authz
        .member(Actor::User(users[1]), tenant, "members:write")
        .await
        .unwrap();
    // Behind the services' back, within this transaction, the admin's own row changes: the
    // grant check below still answers from the decision, so it read no membership.
    sqlx::query("UPDATE memberships SET roles = '{viewer}' WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant)
        .bind(users[1])
        .execute(tx.conn())
        .await
        .unwrap();
    let promoted = env
        .tenancy
        .update_member(&mut tx, users[2], None, &roles(&["accountant"]))
        .await
        .unwrap();
    assert_eq!(promoted.roles, ["accountant"]);
    // A change through the service drops the decision: the next check reads the (now
    // viewer) roles, which cannot grant accountant's writes.
    let refused = env
        .tenancy
        .update_member(&mut tx, users[2], None, &roles(&["accountant", "viewer"]))
        .await
        .unwrap_err();
    assert_eq!(kernel::Problem::from(refused).code(), "cannot_grant");
}
