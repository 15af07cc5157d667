-- Custom roles per tenant (modules/access): a name and permissions picked from the
-- catalogue. Built-in roles live in policies/ and are never rows. Every change bumps
-- tenants.policy_version and sends NOTIFY balance_policy (DESIGN.md §4).
CREATE TABLE tenant_roles (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    name text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    permissions text[] NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
SELECT balance_tenant_rls('tenant_roles');
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_roles TO balance_runtime;

-- Optimistic concurrency (API.md): PATCH with If-Match: "<version>".
ALTER TABLE tenants ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE memberships ADD COLUMN version bigint NOT NULL DEFAULT 1;
