-- Two-factor sign-in (modules/identity, modules/vault). Global: a user's, outside tenants.

-- The TOTP secret, encrypted by the vault with the user id as associated data. Pending
-- until activated with a first code; last_step makes every code single-use.
CREATE TABLE user_totp (
    user_id uuid PRIMARY KEY REFERENCES users (id),
    secret_ciphertext bytea NOT NULL,
    enabled_at timestamptz,
    last_step bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON user_totp TO balance_runtime;

-- Ten single-use recovery codes, stored as HMACs under the token pepper.
CREATE TABLE totp_recovery_codes (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    pepper_id text NOT NULL,
    hash bytea NOT NULL,
    used_at timestamptz
);
CREATE INDEX totp_recovery_codes_by_user ON totp_recovery_codes (user_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON totp_recovery_codes TO balance_runtime;
