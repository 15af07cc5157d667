//! The schema, read from the catalogue after every migration, keeps the rules of DESIGN.md §1.
//! It covers future migrations without being edited.

use sqlx::{Connection, PgConnection};

use crate::helpers::migrated_db;

#[tokio::test]
async fn every_tenant_owned_table_is_row_scoped_and_keyed_by_tenant() {
    let db = migrated_db().await;
    let mut conn = PgConnection::connect(&db.owner_url).await.unwrap();
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
           AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
         ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        tables.iter().any(|(t, _, _)| t == "memberships"),
        "the check sees tenant-owned tables"
    );

    let mut broken = Vec::new();
    for (table, enabled, forced) in &tables {
        if !enabled || !forced {
            broken.push(format!(
                "{table}: row-level security is not ENABLEd and FORCEd"
            ));
        }
        // One tenant policy per command, each reading balance.tenant_id.
        let policies: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT policyname::text, cmd::text, qual::text, with_check::text FROM pg_policies
             WHERE schemaname = 'public' AND tablename = $1",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for cmd in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
            let covered = policies.iter().any(|(_, c, qual, check)| {
                (c == cmd || c == "ALL")
                    && [qual, check].iter().any(|e| {
                        e.as_deref()
                            .is_some_and(|e| e.contains("balance.tenant_id"))
                    })
            });
            if !covered {
                broken.push(format!("{table}: no tenant policy for {cmd}"));
            }
        }
        // A user-scoped policy must also require that no tenant is set.
        for (name, _, qual, _) in &policies {
            let qual = qual.as_deref().unwrap_or("");
            if qual.contains("balance.user_id") && !qual.contains("balance.tenant_id") {
                broken.push(format!(
                    "{table}: policy {name} reads balance.user_id without requiring no tenant"
                ));
            }
        }
        let has_user_policy = policies
            .iter()
            .any(|(_, _, q, _)| q.as_deref().is_some_and(|q| q.contains("balance.user_id")));

        // tenant_id leads the primary key, every unique key and every index (a table with
        // the user policy may also index user_id first, for "my rows across tenants").
        let indexes: Vec<(String, bool, bool, String)> = sqlx::query_as(
            "SELECT i.relname::text, x.indisprimary, x.indisunique, a.attname::text
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
             WHERE x.indrelid = $1::regclass",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        if !indexes.iter().any(|(_, primary, _, _)| *primary) {
            broken.push(format!("{table}: no primary key"));
        }
        for (index, primary, unique, first) in &indexes {
            let allowed = first == "tenant_id"
                || (!primary && !unique && has_user_policy && first == "user_id");
            if !allowed {
                broken.push(format!(
                    "{table}: index {index} starts with {first}, not tenant_id"
                ));
            }
        }

        // A foreign key into a tenant-owned table carries tenant_id to tenant_id.
        let fks: Vec<(String, bool)> = sqlx::query_as(
            "SELECT con.conname::text,
                    EXISTS (
                      SELECT FROM unnest(con.conkey, con.confkey) AS k(src, dst)
                      JOIN pg_attribute s ON s.attrelid = con.conrelid AND s.attnum = k.src
                      JOIN pg_attribute d ON d.attrelid = con.confrelid AND d.attnum = k.dst
                      WHERE s.attname = 'tenant_id' AND d.attname = 'tenant_id')
             FROM pg_constraint con
             WHERE con.contype = 'f' AND con.conrelid = $1::regclass
               AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = con.confrelid AND a.attname = 'tenant_id' AND NOT a.attisdropped)",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for (fk, carries_tenant) in fks {
            if !carries_tenant {
                broken.push(format!(
                    "{table}: foreign key {fk} into a tenant-owned table omits tenant_id"
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "schema rules broken:\n{}",
        broken.join("\n")
    );
}

#[tokio::test]
async fn the_runtime_role_owns_nothing_and_cannot_bypass_row_level_security() {
    let db = migrated_db().await;
    let mut runtime = PgConnection::connect(&db.runtime_url).await.unwrap();
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut runtime)
        .await
        .unwrap();
    let mut owner = PgConnection::connect(&db.owner_url).await.unwrap();

    // The login role and every role it inherits from.
    let roles: Vec<(String, bool, bool, bool, bool)> = sqlx::query_as(
        "WITH RECURSIVE r(oid) AS (
            SELECT oid FROM pg_roles WHERE rolname = $1
            UNION SELECT m.roleid FROM pg_auth_members m JOIN r ON m.member = r.oid)
         SELECT rolname::text, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE oid IN (SELECT oid FROM r)",
    )
    .bind(&me)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(
        roles.iter().any(|r| r.0 == "balance_runtime"),
        "the runtime role gets its grants through balance_runtime"
    );
    for (role, superuser, bypass, createrole, createdb) in &roles {
        assert!(
            !superuser && !bypass && !createrole && !createdb,
            "{role} has a privilege it must not have"
        );
    }
    for (role, ..) in &roles {
        let owned: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)
                  + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)
                  + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)
                  + (SELECT count(*) FROM pg_type WHERE typowner = r.oid)
                  + (SELECT count(*) FROM pg_database WHERE datdba = r.oid)
             FROM pg_roles r WHERE r.rolname = $1",
        )
        .bind(role)
        .fetch_one(&mut owner)
        .await
        .unwrap();
        assert_eq!(owned, 0, "{role} owns something");
    }
    // The owner is not a superuser either.
    let owner_super: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert!(!owner_super);
}
