-- Imports (DESIGN.md §6): the uploaded file (in chunks), the import with its counts, its
-- staged rows (what each became), saved CSV mappings and the mapping last used per account.
-- All tenant-owned; the account-bound ones carry the account scope of DESIGN.md §8.

-- Dedup (DESIGN.md §6, docs/DEDUP.md): the provider id decides when both rows have one; the
-- fingerprint otherwise. Two rows may share a fingerprint when their provider ids differ
-- (two identical coffees synced on two pages), so the fingerprint index is not unique.
DROP INDEX transactions_fingerprint;
CREATE INDEX transactions_fingerprint ON transactions (tenant_id, account_id, fingerprint)
    WHERE fingerprint IS NOT NULL;
CREATE INDEX transactions_external_id ON transactions (tenant_id, account_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX transactions_by_import ON transactions (tenant_id, import_id)
    WHERE import_id IS NOT NULL;
-- A person's edit of any field: an import's revert keeps such rows.
ALTER TABLE transactions ADD COLUMN edited_by_person boolean NOT NULL DEFAULT false;

CREATE TABLE imports (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    account_id uuid NOT NULL,
    -- As given or detected; NULL until the job has read the file.
    format text CHECK (format IN ('csv', 'ofx', 'camt053', 'mt940', 'qif')),
    status text NOT NULL CHECK (status IN ('queued', 'running', 'previewed', 'completed', 'failed', 'reverted')),
    preview boolean NOT NULL DEFAULT false,
    skip_rejected boolean NOT NULL DEFAULT false,
    -- The CSV mapping given, or the one a preset or profile resolved to.
    mapping jsonb,
    preset text,
    profile_id uuid,
    file_name text CHECK (char_length(file_name) <= 255),
    file_size bigint NOT NULL CHECK (file_size >= 0),
    file_sha256 bytea NOT NULL,
    encoding text,
    progress real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    rows_total integer NOT NULL DEFAULT 0,
    inserted integer NOT NULL DEFAULT 0,
    duplicates integer NOT NULL DEFAULT 0,
    rejected integer NOT NULL DEFAULT 0,
    warnings jsonb NOT NULL DEFAULT '[]',
    -- {code, detail} of a failed import.
    error jsonb,
    job_id uuid,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    reverted_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
);
CREATE INDEX imports_by_created ON imports (tenant_id, created_at DESC, id DESC);
SELECT balance_tenant_rls('imports');
SELECT balance_account_rls('imports', 'account_id');
GRANT SELECT, INSERT, UPDATE ON imports TO balance_runtime;

-- The uploaded bytes, 1 MiB at a time, until the import has run.
CREATE TABLE import_chunks (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    import_id uuid NOT NULL,
    seq integer NOT NULL,
    account_id uuid NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (tenant_id, import_id, seq),
    FOREIGN KEY (tenant_id, import_id) REFERENCES imports (tenant_id, id)
);
SELECT balance_tenant_rls('import_chunks');
SELECT balance_account_rls('import_chunks', 'account_id');
GRANT SELECT, INSERT, DELETE ON import_chunks TO balance_runtime;

-- Every row of the file, staged: parsed (with its fingerprint) or rejected, then what it
-- became (inserted as a transaction, or a duplicate of one and by which rule).
CREATE TABLE import_rows (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    import_id uuid NOT NULL,
    row_no integer NOT NULL,
    account_id uuid NOT NULL,
    state text NOT NULL CHECK (state IN ('staged', 'rejected', 'inserted', 'duplicate')),
    date date,
    value_date date,
    amount bigint,
    merchant text,
    description text,
    external_id text,
    category_hint text,
    fingerprint bytea,
    -- Rejected: the field at fault and why.
    field text,
    reason text,
    -- Inserted: the new transaction; duplicate: the one it duplicates, and the rule.
    transaction_id uuid,
    matched_by text CHECK (matched_by IN ('provider_id', 'fingerprint')),
    PRIMARY KEY (tenant_id, import_id, row_no),
    FOREIGN KEY (tenant_id, import_id) REFERENCES imports (tenant_id, id)
);
CREATE INDEX import_rows_by_state ON import_rows (tenant_id, import_id, state, row_no);
SELECT balance_tenant_rls('import_rows');
SELECT balance_account_rls('import_rows', 'account_id');
GRANT SELECT, INSERT, UPDATE, DELETE ON import_rows TO balance_runtime;

-- Saved CSV mappings.
CREATE TABLE import_profiles (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    mapping jsonb NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX import_profiles_name ON import_profiles (tenant_id, lower(name));
SELECT balance_tenant_rls('import_profiles');
GRANT SELECT, INSERT, UPDATE, DELETE ON import_profiles TO balance_runtime;

-- The mapping an account's last CSV import used: the next one starts from it.
CREATE TABLE account_import_mappings (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    account_id uuid NOT NULL,
    mapping jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, account_id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
);
SELECT balance_tenant_rls('account_import_mappings');
SELECT balance_account_rls('account_import_mappings', 'account_id');
GRANT SELECT, INSERT, UPDATE, DELETE ON account_import_mappings TO balance_runtime;
