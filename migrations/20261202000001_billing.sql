-- Billing (modules/billing, issue 24): each tenant's plan and Stripe subscription state,
-- its monthly usage, and the global inbox of Stripe's webhook events.

-- A tenant's billing state. A tenant without a row is on `free` with no subscription; the
-- row is made the first time something locks it (a limit check, a checkout).
CREATE TABLE billing_accounts (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    -- The plan whose limits apply: the subscription's while it lives, `free` otherwise.
    plan text NOT NULL DEFAULT 'free' CHECK (char_length(plan) BETWEEN 1 AND 40),
    stripe_customer_id text CHECK (char_length(stripe_customer_id) BETWEEN 1 AND 255),
    stripe_subscription_id text CHECK (char_length(stripe_subscription_id) BETWEEN 1 AND 255),
    -- Stripe's subscription status; NULL before the first subscription.
    status text CHECK (status IN ('incomplete', 'incomplete_expired', 'trialing', 'active',
                                  'past_due', 'unpaid', 'canceled', 'paused')),
    price_id text,
    current_period_end timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    -- When the state written was Stripe's (the fetch that read it, or the event's
    -- `created`): an older state never overwrites a newer one.
    state_at timestamptz,
    -- Since when the payment is overdue (`past_due` or `unpaid`), and since when the
    -- tenant is read-only for it (the grace after `past_due_since` ran out).
    past_due_since timestamptz,
    read_only_since timestamptz,
    -- The last `invoice.payment_failed` event told to the billing members (told once).
    payment_failed_event text,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);
SELECT balance_tenant_rls('billing_accounts');
GRANT SELECT, INSERT, UPDATE ON billing_accounts TO balance_runtime;

-- Transactions created per calendar month (UTC): the row is locked by each create that
-- counts, so two concurrent imports at the limit cannot both pass.
CREATE TABLE billing_usage (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    period date NOT NULL CHECK (extract(day FROM period) = 1),
    transactions bigint NOT NULL DEFAULT 0 CHECK (transactions >= 0),
    -- When a bank sync first carried the month over the plan's limit (reported once).
    crossed_at timestamptz,
    PRIMARY KEY (tenant_id, period)
);
SELECT balance_tenant_rls('billing_usage');
GRANT SELECT, INSERT, UPDATE ON billing_usage TO balance_runtime;

-- Global: every Stripe event received, once per event id, with its raw body as signed.
-- A body that is not JSON (its signature was valid) is kept under `unparsed:<sha256>`.
CREATE TABLE stripe_events (
    id text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 255),
    type text,
    -- The event's `created` (1-second resolution).
    created timestamptz,
    body text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'applied', 'ignored', 'failed')),
    -- Why it failed or was ignored; never a secret.
    detail text,
    received_at timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz
);
CREATE INDEX stripe_events_pending ON stripe_events (received_at) WHERE status = 'pending';
GRANT SELECT, INSERT, UPDATE ON stripe_events TO balance_runtime;
