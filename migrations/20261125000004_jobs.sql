-- Jobs as the API and operators see them (DESIGN.md §3). The queue itself is apalis's
-- (schema apalis, created by `balance migrate` through apalis-postgres); these rows carry
-- what a person needs: kind, status, attempts, progress, last error. Payloads are ids only.

CREATE TABLE jobs (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    queue text NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    progress real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    last_error text,
    task_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX jobs_by_status ON jobs (tenant_id, status, created_at);
SELECT balance_tenant_rls('jobs');
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO balance_runtime;

CREATE TABLE platform_jobs (
    id uuid PRIMARY KEY,
    queue text NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    progress real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    last_error text,
    task_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX platform_jobs_by_status ON platform_jobs (status, created_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON platform_jobs TO balance_runtime;
