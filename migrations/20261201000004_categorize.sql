-- Categorization (DESIGN.md §9): the tenant's rules in their order, the suggestions that
-- wait for a person, the tenant's settings, and the LLM's per-tenant budget and cache.
-- Decisions themselves live on the transaction (`transactions.categorization`, the
-- ledger's), so every transaction explains its own category.

CREATE TABLE categorization_rules (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- Rules run in ascending position (then id): the first that decides wins.
    position integer NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    conditions jsonb NOT NULL,
    actions jsonb NOT NULL,
    hits bigint NOT NULL DEFAULT 0,
    last_hit_at timestamptz,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX categorization_rules_by_position ON categorization_rules (tenant_id, position, id);
CREATE UNIQUE INDEX categorization_rules_name ON categorization_rules (tenant_id, lower(name));
SELECT balance_tenant_rls('categorization_rules');
GRANT SELECT, INSERT, UPDATE, DELETE ON categorization_rules TO balance_runtime;

-- A suggestion below the tenant's confidence threshold, waiting for a person. One pending
-- approval per transaction at most.
CREATE TABLE approvals (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    transaction_id uuid NOT NULL,
    account_id uuid NOT NULL,
    category_id uuid NOT NULL,
    source text NOT NULL CHECK (source IN ('similarity', 'llm')),
    confidence double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    reasoning text NOT NULL,
    neighbours jsonb,
    model text,
    status text NOT NULL CHECK (status IN ('pending', 'approved', 'overridden', 'resolved')),
    -- What a person chose (approved: the suggestion; overridden: theirs), or the rule that
    -- resolved it.
    decided_category_id uuid,
    decided_by uuid,
    decided_at timestamptz,
    resolved_by_rule uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    -- No foreign key to categories: a category may be deleted while a suggestion of it
    -- waits (approving such a suggestion is refused then).
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id)
);
CREATE UNIQUE INDEX approvals_pending ON approvals (tenant_id, transaction_id)
    WHERE status = 'pending';
CREATE INDEX approvals_by_status ON approvals (tenant_id, status, created_at DESC, id DESC);
SELECT balance_tenant_rls('approvals');
SELECT balance_account_rls('approvals', 'account_id');
GRANT SELECT, INSERT, UPDATE ON approvals TO balance_runtime;

CREATE TABLE categorization_settings (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
    -- Suggestions below it wait for a person.
    approval_threshold double precision NOT NULL DEFAULT 0.7
        CHECK (approval_threshold BETWEEN 0 AND 1),
    -- Whether the LLM step may run for this tenant (when the platform configures one).
    llm_enabled boolean NOT NULL DEFAULT true,
    version bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT balance_tenant_rls('categorization_settings');
GRANT SELECT, INSERT, UPDATE ON categorization_settings TO balance_runtime;

-- LLM calls per tenant and day (UTC), against the configured daily budget.
CREATE TABLE llm_usage (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    day date NOT NULL,
    calls integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);
SELECT balance_tenant_rls('llm_usage');
GRANT SELECT, INSERT, UPDATE ON llm_usage TO balance_runtime;

-- The LLM's answer per normalised merchant: a merchant is asked about once.
CREATE TABLE llm_cache (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    merchant_key text COLLATE "C" NOT NULL,
    -- NULL: the model found no category that fits.
    category_id uuid,
    confidence double precision NOT NULL,
    reason text NOT NULL,
    model text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, merchant_key)
);
SELECT balance_tenant_rls('llm_cache');
GRANT SELECT, INSERT, UPDATE, DELETE ON llm_cache TO balance_runtime;
