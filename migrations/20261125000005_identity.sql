-- Accounts and sessions (modules/identity) and outgoing mail (modules/mail). All global:
-- a user exists outside any tenant.

ALTER TABLE users
    ADD COLUMN password_hash text,
    ADD COLUMN password_changed_at timestamptz;

-- A signed-in device. Access tokens name it (`sid`); every request checks it is live.
CREATE TABLE user_sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_reason text,
    ip inet,
    user_agent text
);
CREATE INDEX user_sessions_by_user ON user_sessions (user_id, created_at DESC);
GRANT SELECT, INSERT, UPDATE ON user_sessions TO balance_runtime;

-- Refresh tokens: one family per session; each token works once (used_at).
CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES user_sessions (id),
    pepper_id text NOT NULL,
    hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO balance_runtime;

-- Single-use tokens sent by mail: email verification and password reset.
CREATE TABLE one_time_tokens (
    id uuid PRIMARY KEY,
    purpose text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    user_id uuid NOT NULL REFERENCES users (id),
    pepper_id text NOT NULL,
    hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX one_time_tokens_by_user ON one_time_tokens (user_id, purpose);
GRANT SELECT, INSERT, UPDATE ON one_time_tokens TO balance_runtime;

-- Failure counters per account (correct across instances). `key` is a purpose and an
-- HMAC of the account's email, so unknown and known addresses are counted alike.
CREATE TABLE auth_throttles (
    key text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    count integer NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON auth_throttles TO balance_runtime;

-- Mail waiting to be sent (modules/mail); params are scrubbed once sent.
CREATE TABLE mail_outbox (
    id uuid PRIMARY KEY,
    recipient text NOT NULL,
    template text NOT NULL,
    params jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
GRANT SELECT, INSERT, UPDATE ON mail_outbox TO balance_runtime;
