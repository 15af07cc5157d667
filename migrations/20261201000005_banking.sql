-- Bank connections (modules/banking, issue 23): a provider item per connection, its
-- access token sealed by the vault (bound to tenant, connection and item), the sync cursor
-- that moves only with an applied update, and each provider account linked to a ledger
-- account with the balance the bank last reported.

CREATE TABLE bank_connections (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    provider text NOT NULL CHECK (provider IN ('plaid', 'sandbox')),
    item_id text NOT NULL CHECK (char_length(item_id) BETWEEN 1 AND 200),
    institution text CHECK (char_length(institution) <= 200),
    -- vault ciphertext of the provider's access token; NULL once disconnected.
    token_ciphertext bytea,
    status text NOT NULL CHECK (status IN ('active', 'needs_reauth', 'error', 'disconnected')),
    -- The provider's cursor after the last update applied; NULL before the first.
    cursor text,
    last_synced_at timestamptz,
    last_error_code text,
    last_error_message text,
    last_error_at timestamptz,
    -- Consecutive failed syncs; the connection is `error` from 3 on.
    failures integer NOT NULL DEFAULT 0,
    -- The sync queued or running for it, which a second request joins.
    sync_job_id uuid,
    created_by uuid,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    disconnected_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX bank_connections_by_created ON bank_connections (tenant_id, created_at DESC, id DESC);
-- One live connection per provider item.
CREATE UNIQUE INDEX bank_connections_item ON bank_connections (tenant_id, provider, item_id)
    WHERE status <> 'disconnected';
SELECT balance_tenant_rls('bank_connections');
GRANT SELECT, INSERT, UPDATE ON bank_connections TO balance_runtime;

-- A provider account of a connection and the ledger account its transactions go to.
CREATE TABLE bank_accounts (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    connection_id uuid NOT NULL,
    provider_account_id text NOT NULL CHECK (char_length(provider_account_id) BETWEEN 1 AND 200),
    account_id uuid NOT NULL,
    -- The provider's order of the item's accounts.
    position smallint NOT NULL,
    name text NOT NULL,
    mask text CHECK (char_length(mask) <= 8),
    kind text NOT NULL,
    subtype text,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    current_balance bigint,
    available_balance bigint,
    -- The connection opened the ledger account: its first sync sets the opening balance
    -- so that the computed balance is the bank's.
    calibrate boolean NOT NULL DEFAULT false,
    -- reported − computed after the last sync that changed it (`bank.balance_drift`).
    drift bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, provider_account_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES bank_connections (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id)
);
CREATE INDEX bank_accounts_by_account ON bank_accounts (tenant_id, account_id);
SELECT balance_tenant_rls('bank_accounts');
SELECT balance_account_rls('bank_accounts', 'account_id');
GRANT SELECT, INSERT, UPDATE ON bank_accounts TO balance_runtime;
