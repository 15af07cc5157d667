-- The ledger (DESIGN.md §6, §8): accounts, categories, transactions with splits, the search
-- terms and the daily balance deltas, all tenant-owned; every account-owned table also
-- carries the account scope of DESIGN.md §8.

-- Account scope: who may see which accounts. NULL means every account of the tenant.
ALTER TABLE memberships ADD COLUMN account_ids uuid[];
ALTER TABLE invitations ADD COLUMN account_ids uuid[];
ALTER TABLE api_keys ADD COLUMN account_ids uuid[];

-- The restrictive policy of an account-owned table: with `balance.account_ids` set (a
-- comma-separated uuid list, by the access decision of a scoped member or key), only rows
-- of those accounts; unset or empty, every row the tenant policy lets through. The
-- sub-selects make the setting an init-plan evaluated once per statement.
CREATE FUNCTION balance_account_rls(target regclass, account_column text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    scoped constant text := format(
        $q$((SELECT NULLIF(current_setting('balance.account_ids', true), '')) IS NULL
            OR %I = ANY (CAST((SELECT string_to_array(NULLIF(current_setting('balance.account_ids', true), ''), ',')) AS uuid[])))$q$,
        account_column);
BEGIN
    EXECUTE format(
        'CREATE POLICY account_scope ON %s AS RESTRICTIVE FOR ALL USING (%s) WITH CHECK (%s)',
        target, scoped, scoped);
END
$$;
REVOKE ALL ON FUNCTION balance_account_rls(regclass, text) FROM PUBLIC;

CREATE TABLE accounts (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    kind text NOT NULL CHECK (kind IN ('checking', 'savings', 'credit', 'cash', 'loan')),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    opening_balance bigint NOT NULL DEFAULT 0,
    opening_date date NOT NULL,
    -- Normalised: upper case, no spaces, mod-97 checked.
    iban text CHECK (iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    institution text CHECK (char_length(institution) <= 200),
    -- Opening balance plus posted transactions; with pending ones too. Maintained in the
    -- transaction of every change that moves them, never summed on read.
    balance bigint NOT NULL,
    pending_balance bigint NOT NULL,
    reported_balance bigint,
    reported_at timestamptz,
    archived_at timestamptz,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX accounts_by_created ON accounts (tenant_id, created_at DESC, id DESC);
SELECT balance_tenant_rls('accounts');
SELECT balance_account_rls('accounts', 'id');
GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO balance_runtime;

CREATE TABLE categories (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    kind text NOT NULL CHECK (kind IN ('expense', 'income', 'transfer')),
    -- At most two levels: a parent has no parent (checked by the ledger service).
    parent_id uuid,
    archived_at timestamptz,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES categories (tenant_id, id)
);
-- One name per level (case-insensitive).
CREATE UNIQUE INDEX categories_name ON categories
    (tenant_id, coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
SELECT balance_tenant_rls('categories');
GRANT SELECT, INSERT, UPDATE, DELETE ON categories TO balance_runtime;

CREATE TABLE transactions (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    account_id uuid NOT NULL,
    date date NOT NULL,
    value_date date,
    amount bigint NOT NULL,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    merchant text CHECK (char_length(merchant) <= 200),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 1000),
    status text NOT NULL CHECK (status IN ('pending', 'posted')),
    category_id uuid,
    categorization jsonb,
    notes text CHECK (char_length(notes) <= 4000),
    tags text[] NOT NULL DEFAULT '{}',
    source text NOT NULL CHECK (source IN ('manual', 'import', 'sync')),
    external_id text,
    import_id uuid,
    -- DESIGN.md §6's dedup fingerprint; kept after a soft delete.
    fingerprint bytea,
    transfer_id uuid,
    locked_fields text[] NOT NULL DEFAULT '{}',
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id),
    FOREIGN KEY (tenant_id, category_id) REFERENCES categories (tenant_id, id)
);
CREATE INDEX transactions_by_date ON transactions (tenant_id, date DESC, id DESC);
CREATE INDEX transactions_by_account ON transactions (tenant_id, account_id, date DESC, id DESC);
CREATE INDEX transactions_by_category ON transactions (tenant_id, category_id) WHERE category_id IS NOT NULL;
CREATE INDEX transactions_by_transfer ON transactions (tenant_id, transfer_id) WHERE transfer_id IS NOT NULL;
CREATE UNIQUE INDEX transactions_fingerprint ON transactions (tenant_id, account_id, fingerprint)
    WHERE fingerprint IS NOT NULL;
SELECT balance_tenant_rls('transactions');
SELECT balance_account_rls('transactions', 'account_id');
GRANT SELECT, INSERT, UPDATE ON transactions TO balance_runtime;

-- A transaction's parts, each with its own category; they add up to its amount.
CREATE TABLE transaction_splits (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    transaction_id uuid NOT NULL,
    ordinal smallint NOT NULL,
    account_id uuid NOT NULL,
    category_id uuid NOT NULL,
    amount bigint NOT NULL,
    memo text CHECK (char_length(memo) <= 500),
    PRIMARY KEY (tenant_id, transaction_id, ordinal),
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id),
    FOREIGN KEY (tenant_id, category_id) REFERENCES categories (tenant_id, id)
);
CREATE INDEX transaction_splits_by_category ON transaction_splits (tenant_id, category_id);
SELECT balance_tenant_rls('transaction_splits');
SELECT balance_account_rls('transaction_splits', 'account_id');
GRANT SELECT, INSERT, UPDATE, DELETE ON transaction_splits TO balance_runtime;

-- Search terms (INTEGRATIONS.md §5): equality and bounded prefix on a "C"-collated key are
-- leakproof, so this index serves under RLS where trigram and full-text indexes cannot.
CREATE TABLE transaction_terms (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    term text COLLATE "C" NOT NULL,
    date date NOT NULL,
    transaction_id uuid NOT NULL,
    account_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, term, date, transaction_id)
);
CREATE INDEX transaction_terms_by_transaction ON transaction_terms (tenant_id, transaction_id);
SELECT balance_tenant_rls('transaction_terms');
SELECT balance_account_rls('transaction_terms', 'account_id');
GRANT SELECT, INSERT, DELETE ON transaction_terms TO balance_runtime;

-- The tenant's terms with how many live rows use each: prefix expansion and the rarest word
-- of a query come from here.
CREATE TABLE transaction_term_counts (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    term text COLLATE "C" NOT NULL,
    n bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (tenant_id, term)
);
SELECT balance_tenant_rls('transaction_term_counts');
GRANT SELECT, INSERT, UPDATE, DELETE ON transaction_term_counts TO balance_runtime;

-- What each day moved an account by (posted, and pending): the end-of-day series is a
-- running sum over days, never over transactions.
CREATE TABLE account_days (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    account_id uuid NOT NULL,
    day date NOT NULL,
    posted bigint NOT NULL DEFAULT 0,
    pending bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, account_id, day),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
);
SELECT balance_tenant_rls('account_days');
SELECT balance_account_rls('account_days', 'account_id');
GRANT SELECT, INSERT, UPDATE, DELETE ON account_days TO balance_runtime;
