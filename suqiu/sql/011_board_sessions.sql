-- Board sign-ins (督办与绩效看板): the browser holds only a random token; this row holds the
-- SHA-256 of that token, the SHA-256 of the API key it signed in with, and its CSRF token.
-- A revoked key ends its sessions: every request resolves the key again.
CREATE TABLE IF NOT EXISTS board_sessions (
    token_hash bytea       PRIMARY KEY,
    key_hash   bytea       NOT NULL,
    csrf       text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS board_sessions_expiry ON board_sessions (expires_at);
