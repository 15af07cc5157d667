-- The tamper-evident audit log (DESIGN.md §2, modules/audit).
--
-- One hash chain per tenant (events, tenant-owned) and one platform chain
-- (platform_events, global). The platform tables carry a constant chain_id where the
-- tenant tables carry tenant_id, so the same statements serve both.

-- Rejects UPDATE, DELETE and TRUNCATE on audit records, even for the owner. The one
-- exception is the tenant purge: a DELETE by the table owner inside a transaction whose
-- balance.purge_tenant names the row's tenant (`balance admin purge-tenant`).
CREATE FUNCTION audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' THEN
        IF TG_TABLE_NAME IN ('events', 'audit_checkpoints')
           AND OLD.tenant_id::text = current_setting('balance.purge_tenant', true)
           AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
REVOKE ALL ON FUNCTION audit_append_only() FROM PUBLIC;

-- Tenant chains.
CREATE TABLE audit_heads (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
    seq bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
    hash bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT balance_tenant_rls('audit_heads');
GRANT SELECT, INSERT, UPDATE ON audit_heads TO balance_runtime;

CREATE TABLE events (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    seq bigint NOT NULL CHECK (seq > 0),
    id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    type text NOT NULL,
    actor_kind text NOT NULL,
    actor_id uuid,
    source_agent text NOT NULL,
    resource_type text,
    resource_id text,
    request_id text,
    -- The exact RFC 8785 text that was hashed; verify recomputes from it, never from jsonb.
    canonical text NOT NULL,
    hash_version smallint NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    CONSTRAINT events_id_key UNIQUE (tenant_id, id)
);
CREATE INDEX events_by_type ON events (tenant_id, type, seq DESC);
CREATE INDEX events_by_actor ON events (tenant_id, actor_id, seq DESC);
CREATE INDEX events_by_resource ON events (tenant_id, resource_type, resource_id, seq DESC);
CREATE INDEX events_by_time ON events (tenant_id, occurred_at);
SELECT balance_tenant_rls('events');
GRANT SELECT, INSERT ON events TO balance_runtime;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- Who sent the request: outside the hash, so it can be erased.
CREATE TABLE event_clients (
    tenant_id uuid NOT NULL,
    event_id uuid NOT NULL,
    ip inet,
    user_agent text,
    PRIMARY KEY (tenant_id, event_id),
    FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id)
);
SELECT balance_tenant_rls('event_clients');
GRANT SELECT, INSERT ON event_clients TO balance_runtime;

CREATE TABLE audit_checkpoints (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    seq bigint NOT NULL,
    hash bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    key_id text NOT NULL,
    signature bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    FOREIGN KEY (tenant_id, seq) REFERENCES events (tenant_id, seq) DEFERRABLE INITIALLY DEFERRED
);
SELECT balance_tenant_rls('audit_checkpoints');
GRANT SELECT, INSERT ON audit_checkpoints TO balance_runtime;
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- The platform chain: events with no tenant (signup, a failed login for an unknown email).
CREATE TABLE platform_audit_head (
    chain_id uuid PRIMARY KEY CHECK (chain_id = '00000000-0000-0000-0000-000000000000'),
    seq bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
    hash bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex'),
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON platform_audit_head TO balance_runtime;

CREATE TABLE platform_events (
    chain_id uuid NOT NULL CHECK (chain_id = '00000000-0000-0000-0000-000000000000'),
    seq bigint NOT NULL CHECK (seq > 0),
    id uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    type text NOT NULL,
    actor_kind text NOT NULL,
    actor_id uuid,
    source_agent text NOT NULL,
    resource_type text,
    resource_id text,
    request_id text,
    canonical text NOT NULL,
    hash_version smallint NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (chain_id, seq),
    CONSTRAINT platform_events_id_key UNIQUE (chain_id, id)
);
CREATE INDEX platform_events_by_type ON platform_events (type, seq DESC);
GRANT SELECT, INSERT ON platform_events TO balance_runtime;
CREATE TRIGGER platform_events_append_only BEFORE UPDATE OR DELETE ON platform_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER platform_events_no_truncate BEFORE TRUNCATE ON platform_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE platform_event_clients (
    chain_id uuid NOT NULL,
    event_id uuid NOT NULL,
    ip inet,
    user_agent text,
    PRIMARY KEY (chain_id, event_id),
    FOREIGN KEY (chain_id, event_id) REFERENCES platform_events (chain_id, id)
);
GRANT SELECT, INSERT ON platform_event_clients TO balance_runtime;

CREATE TABLE platform_checkpoints (
    chain_id uuid NOT NULL,
    seq bigint NOT NULL,
    hash bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    key_id text NOT NULL,
    signature bytea NOT NULL,
    PRIMARY KEY (chain_id, seq),
    FOREIGN KEY (chain_id, seq) REFERENCES platform_events (chain_id, seq) DEFERRABLE INITIALLY DEFERRED
);
GRANT SELECT, INSERT ON platform_checkpoints TO balance_runtime;
CREATE TRIGGER platform_checkpoints_append_only BEFORE UPDATE OR DELETE ON platform_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER platform_checkpoints_no_truncate BEFORE TRUNCATE ON platform_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
