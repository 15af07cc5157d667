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

/// A user with the email `<id>@example.com`.
pub async fn user(db: &Db) -> UserId {
    let id = UserId::new();
    let mut tx = SystemTx::begin(db, Actor::System).await.unwrap();
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, $2, 'Test User')")
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
