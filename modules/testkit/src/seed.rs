//! Arranging data through the same handles module code uses: a tenant, a user, a
//! membership. Test set-up only, so plain (unchecked) SQL: the product's own statements are
//! the ones sqlx checks at compile time.

use kernel::{Actor, Db, SystemTx, TenantId, TenantTx, UserId};

/// A tenant workspace named `name`, with no members.
pub async fn tenant(db: &Db, name: &str) -> TenantId {
    let id = TenantId::new();
    let mut tx = SystemTx::begin(db, Actor::System).await.unwrap();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(name)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

/// A user with the (verified) email `<id>@example.com`.
pub async fn user(db: &Db) -> UserId {
    let id = UserId::new();
    let mut tx = SystemTx::begin(db, Actor::System).await.unwrap();
    sqlx::query("INSERT INTO users (id, email, name, email_verified_at) VALUES ($1, $2, 'Test User', now())")
        .bind(id)
        .bind(format!("{id}@example.com"))
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

/// `user` becomes a member of `tenant` with `roles`.
pub async fn member(db: &Db, tenant: TenantId, user: UserId, roles: &[&str]) {
    let mut tx = TenantTx::begin(db, tenant, Actor::System).await.unwrap();
    sqlx::query("INSERT INTO memberships (tenant_id, user_id, roles) VALUES ($1, $2, $3)")
        .bind(tenant)
        .bind(user)
        .bind(roles)
        .execute(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// The token in the newest `template` mail queued for `to` (the single-use link a person
/// would click), read from the outbox.
pub async fn mailed_token(db: &Db, to: &str, template: &str) -> String {
    let mut tx = SystemTx::begin(db, Actor::System).await.unwrap();
    let token: String = sqlx::query_scalar(
        "SELECT params ->> 'token' FROM mail_outbox WHERE recipient = $1 AND template = $2
         ORDER BY id DESC LIMIT 1",
    )
    .bind(to)
    .bind(template)
    .fetch_one(tx.conn())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    token
}
