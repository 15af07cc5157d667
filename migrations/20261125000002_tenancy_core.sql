-- The row-scoped data layer (DESIGN.md §1).
--
-- A table is global exactly when it has no tenant_id. Every tenant-owned table has
-- tenant_id first in its primary key and unique keys, composite foreign keys that include
-- tenant_id, and row-level security ENABLEd and FORCEd with one policy per command
-- (balance_tenant_rls below). The schema test (apps/balance/tests/api/schema.rs) checks
-- all of it for every migration, present and future.

-- Applies the tenant policies of DESIGN.md §1 to a tenant-owned table. The sub-select
-- makes the setting an init-plan evaluated once per statement; NULLIF turns the empty
-- string a pooled connection keeps after a transaction-local set_config into NULL.
CREATE FUNCTION balance_tenant_rls(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tenant constant text := $q$tenant_id = (SELECT NULLIF(current_setting('balance.tenant_id', true), '')::uuid)$q$;
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    EXECUTE format('CREATE POLICY tenant_select ON %s FOR SELECT USING (%s)', target, tenant);
    EXECUTE format('CREATE POLICY tenant_insert ON %s FOR INSERT WITH CHECK (%s)', target, tenant);
    EXECUTE format('CREATE POLICY tenant_update ON %s FOR UPDATE USING (%s) WITH CHECK (%s)', target, tenant, tenant);
    EXECUTE format('CREATE POLICY tenant_delete ON %s FOR DELETE USING (%s)', target, tenant);
END
$$;

-- For tables a user reads across tenants: their own rows, only while no tenant is set
-- (policies are OR-ed: without the second half, a user inside tenant A would see their
-- own rows of tenant B).
CREATE FUNCTION balance_user_select_rls(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        $q$CREATE POLICY user_select ON %s FOR SELECT USING (
            user_id = (SELECT NULLIF(current_setting('balance.user_id', true), '')::uuid)
            AND (SELECT NULLIF(current_setting('balance.tenant_id', true), '')) IS NULL)$q$,
        target);
END
$$;

REVOKE ALL ON FUNCTION balance_tenant_rls(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION balance_user_select_rls(regclass) FROM PUBLIC;

-- Global: tenant workspaces.
CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    plan text NOT NULL DEFAULT 'free',
    -- Bumped by every role or membership change; instances compare it on use.
    policy_version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
GRANT SELECT, INSERT, UPDATE ON tenants TO balance_runtime;

-- Global: people with a login. email is stored normalised (kernel::Email).
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    time_zone text NOT NULL DEFAULT 'UTC',
    email_verified_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);
GRANT SELECT, INSERT, UPDATE ON users TO balance_runtime;

-- Tenant-owned: who belongs to a tenant, with which roles.
CREATE TABLE memberships (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    user_id uuid NOT NULL REFERENCES users (id),
    roles text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_by_created ON memberships (tenant_id, created_at DESC, user_id DESC);
-- "My tenants" (UserTx) reads by user across tenants; the user policy guards it.
CREATE INDEX memberships_by_user ON memberships (user_id);
SELECT balance_tenant_rls('memberships');
SELECT balance_user_select_rls('memberships');
GRANT SELECT, INSERT, UPDATE, DELETE ON memberships TO balance_runtime;

-- Tenant-owned: Idempotency-Key replays of tenant endpoints (kernel::idempotency).
CREATE TABLE idempotency_keys (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    key text NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL,
    status smallint,
    body jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (tenant_id, expires_at);
SELECT balance_tenant_rls('idempotency_keys');
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO balance_runtime;

-- Global: Idempotency-Key replays of tenant-less endpoints, per user.
CREATE TABLE user_idempotency_keys (
    user_id uuid NOT NULL REFERENCES users (id),
    key text NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL,
    status smallint,
    body jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX user_idempotency_keys_expiry ON user_idempotency_keys (expires_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON user_idempotency_keys TO balance_runtime;
