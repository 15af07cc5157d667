-- API keys (modules/tenancy, modules/access): `bal_live_<tenant id, base32>_<secret>`.
-- The secret is found by its HMAC under a server pepper inside the tenant's own rows: no
-- global lookup table of tenant secrets exists (DESIGN.md §1).
CREATE TABLE api_keys (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    roles text[] NOT NULL,
    pepper_id text NOT NULL,
    hash bytea NOT NULL,
    prefix text NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT api_keys_hash_key UNIQUE (tenant_id, hash)
);
SELECT balance_tenant_rls('api_keys');
GRANT SELECT, INSERT, UPDATE ON api_keys TO balance_runtime;
