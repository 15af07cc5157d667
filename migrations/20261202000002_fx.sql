-- Exchange rates (modules/fx, issue 25; DESIGN.md §10): the ECB's reference rates,
-- 1 EUR = `rate` `quote`, one row per currency and TARGET working day as published (no
-- gap-filled rows: a lookup takes the last rate on or before a date, at most 7 days back).
-- Global: every tenant converts at the same rates.
CREATE TABLE fx_rates (
    quote text NOT NULL CHECK (quote ~ '^[A-Z]{3}$' AND quote <> 'EUR'),
    date date NOT NULL,
    rate numeric NOT NULL CHECK (rate > 0),
    -- `ecb-history` (the file shipped with the product) or `ecb-daily` (the daily fetch).
    source text NOT NULL CHECK (source IN ('ecb-history', 'ecb-daily')),
    fetched_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (quote, date)
);
GRANT SELECT, INSERT, UPDATE ON fx_rates TO balance_runtime;

-- Each tenant's base currency: budgets and analytics report in it (changeable).
ALTER TABLE tenants ADD COLUMN currency text NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$');
