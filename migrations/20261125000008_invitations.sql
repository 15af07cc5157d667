-- Invitations (modules/tenancy): single-use, seven days, accepted by a signed-in user whose
-- email matches. The token embeds the tenant id; its secret is found by HMAC inside the
-- tenant's rows (DESIGN.md §1).
CREATE TABLE invitations (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    email text NOT NULL,
    roles text[] NOT NULL,
    pepper_id text NOT NULL,
    hash bytea NOT NULL,
    invited_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT invitations_hash_key UNIQUE (tenant_id, hash)
);
SELECT balance_tenant_rls('invitations');
GRANT SELECT, INSERT, UPDATE ON invitations TO balance_runtime;
