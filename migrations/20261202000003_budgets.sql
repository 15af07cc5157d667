-- Budgets (modules/budgets, issue 25): a spending limit per period over a category (with
-- or without its children) or all spending, optionally over some accounts, in any
-- currency; and the thresholds each period has crossed, each alerted once.

-- The tenant's time zone: which date "today" is, so which period is current.
ALTER TABLE tenants ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC'
    CHECK (char_length(time_zone) BETWEEN 1 AND 64);

CREATE TABLE budgets (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- NULL: all spending (expense categories and uncategorised outflows).
    category_id uuid,
    include_children boolean NOT NULL DEFAULT true,
    -- NULL: every account; else only these (the budget is visible to a member confined to
    -- some accounts only when they see all of these).
    account_ids uuid[],
    period text NOT NULL CHECK (period IN ('weekly', 'monthly', 'quarterly', 'yearly')),
    -- The first day of the first period; later periods follow it (a fiscal year from April).
    anchor date NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    rollover boolean NOT NULL DEFAULT false,
    -- Percentages of the amount, ascending.
    thresholds integer[] NOT NULL DEFAULT '{80,100,120}',
    created_by uuid,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, category_id) REFERENCES categories (tenant_id, id)
);
CREATE INDEX budgets_by_created ON budgets (tenant_id, created_at DESC, id DESC);
SELECT balance_tenant_rls('budgets');
-- A member confined to some accounts sees a budget only when it names accounts, all of
-- which they see (DESIGN.md §8).
CREATE POLICY account_scope ON budgets AS RESTRICTIVE FOR ALL
    USING ((SELECT NULLIF(current_setting('balance.account_ids', true), '')) IS NULL
           OR account_ids <@ CAST((SELECT string_to_array(NULLIF(current_setting('balance.account_ids', true), ''), ',')) AS uuid[]))
    WITH CHECK ((SELECT NULLIF(current_setting('balance.account_ids', true), '')) IS NULL
           OR account_ids <@ CAST((SELECT string_to_array(NULLIF(current_setting('balance.account_ids', true), ''), ',')) AS uuid[]));
GRANT SELECT, INSERT, UPDATE, DELETE ON budgets TO balance_runtime;

-- A threshold of a budget's period: crossed (alerted once) or re-armed by a correction.
CREATE TABLE budget_thresholds (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    budget_id uuid NOT NULL,
    period_start date NOT NULL,
    threshold integer NOT NULL,
    crossed_at timestamptz NOT NULL,
    -- What was spent when it crossed, in the budget's currency.
    spent bigint NOT NULL,
    -- false once a correction took spending back below it: the next crossing alerts again.
    armed boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, budget_id, period_start, threshold),
    FOREIGN KEY (tenant_id, budget_id) REFERENCES budgets (tenant_id, id) ON DELETE CASCADE
);
SELECT balance_tenant_rls('budget_thresholds');
GRANT SELECT, INSERT, UPDATE, DELETE ON budget_thresholds TO balance_runtime;

-- Savings goals: a target amount (and date), fed by a linked account's balance or by
-- contributions (linked transactions or manual entries).
CREATE TABLE goals (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    target_amount bigint NOT NULL CHECK (target_amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    target_date date,
    -- Its balance is what is saved; NULL: the contributions are.
    account_id uuid,
    -- When it was first reached (`goal.reached` once).
    reached_at timestamptz,
    created_by uuid,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
);
CREATE INDEX goals_by_created ON goals (tenant_id, created_at DESC, id DESC);
SELECT balance_tenant_rls('goals');
-- A member confined to some accounts sees the goals of accounts they see.
CREATE POLICY account_scope ON goals AS RESTRICTIVE FOR ALL
    USING ((SELECT NULLIF(current_setting('balance.account_ids', true), '')) IS NULL
           OR account_id = ANY (CAST((SELECT string_to_array(NULLIF(current_setting('balance.account_ids', true), ''), ',')) AS uuid[])))
    WITH CHECK ((SELECT NULLIF(current_setting('balance.account_ids', true), '')) IS NULL
           OR account_id = ANY (CAST((SELECT string_to_array(NULLIF(current_setting('balance.account_ids', true), ''), ',')) AS uuid[])));
GRANT SELECT, INSERT, UPDATE, DELETE ON goals TO balance_runtime;

CREATE TABLE goal_contributions (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    goal_id uuid NOT NULL,
    id uuid NOT NULL,
    date date NOT NULL,
    -- In the goal's currency.
    amount bigint NOT NULL CHECK (amount <> 0),
    transaction_id uuid,
    note text CHECK (char_length(note) <= 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, goal_id, id),
    FOREIGN KEY (tenant_id, goal_id) REFERENCES goals (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id)
);
CREATE UNIQUE INDEX goal_contributions_transaction ON goal_contributions (tenant_id, goal_id, transaction_id)
    WHERE transaction_id IS NOT NULL;
SELECT balance_tenant_rls('goal_contributions');
GRANT SELECT, INSERT, UPDATE, DELETE ON goal_contributions TO balance_runtime;
