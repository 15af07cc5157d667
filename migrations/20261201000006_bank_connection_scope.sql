-- A bank connection under the account scope (DESIGN.md §8): the ledger accounts it feeds,
-- and a restrictive policy that shows a caller confined to some accounts only the
-- connections all of whose accounts they see (the others answer 404, like the accounts).
ALTER TABLE bank_connections ADD COLUMN account_ids uuid[] NOT NULL DEFAULT '{}';
CREATE POLICY account_scope ON bank_connections AS RESTRICTIVE FOR ALL
    USING ((SELECT NULLIF(current_setting('balance.account_ids', true), '')) IS NULL
           OR account_ids <@ CAST((SELECT string_to_array(NULLIF(current_setting('balance.account_ids', true), ''), ',')) AS uuid[]))
    WITH CHECK ((SELECT NULLIF(current_setting('balance.account_ids', true), '')) IS NULL
           OR account_ids <@ CAST((SELECT string_to_array(NULLIF(current_setting('balance.account_ids', true), ''), ',')) AS uuid[]));
