-- The group role that holds the runtime's privileges. Migrations grant to it; `balance
-- migrate` makes the login role of BALANCE_DATABASE_URL a member. It owns nothing and
-- cannot log in, bypass row-level security or create anything.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'balance_runtime') THEN
        CREATE ROLE balance_runtime NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO balance_runtime;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
