-- Idempotency-Key rows are kept 24 hours (API.md); a replayed API key's sealed secret is
-- among them, so expired rows must not linger. The job runner calls this hourly
-- (`idempotency.sweep`). Tenant rows are behind row-level security, so the sweep visits each
-- tenant with that tenant's setting, as any tenant transaction would.
CREATE FUNCTION balance_sweep_idempotency() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    t uuid;
    n bigint;
    total bigint := 0;
BEGIN
    FOR t IN SELECT id FROM tenants ORDER BY id LOOP
        PERFORM set_config('balance.tenant_id', t::text, true);
        DELETE FROM idempotency_keys WHERE tenant_id = t AND expires_at < now();
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END LOOP;
    PERFORM set_config('balance.tenant_id', '', true);
    DELETE FROM user_idempotency_keys WHERE expires_at < now();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN total + n;
END
$$;
REVOKE ALL ON FUNCTION balance_sweep_idempotency() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION balance_sweep_idempotency() TO balance_runtime;
