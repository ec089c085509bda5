-- 安全审计: who read what, when and from where; refused authentications too. Each writer (an API
-- process) keeps its own SHA-256 chain: `hash` = SHA-256(prev_hash || the entry's canonical
-- JSON), so an edited, inserted or deleted row breaks `suqiu replay verify --access-log`.
-- Retention deletes whole days from the oldest: the first row left of a chain is its anchor.
CREATE TABLE IF NOT EXISTS access_log (
    id         bigserial   PRIMARY KEY,
    writer     text        NOT NULL,
    seq        bigint      NOT NULL,
    at         timestamptz NOT NULL,
    key_prefix text,
    role       text,
    method     text        NOT NULL,
    path       text        NOT NULL,
    case_id    text,
    status     integer     NOT NULL,
    remote     text,
    prev_hash  bytea       NOT NULL,
    hash       bytea       NOT NULL,
    UNIQUE (writer, seq)
);
CREATE INDEX IF NOT EXISTS access_log_at ON access_log (at);
CREATE INDEX IF NOT EXISTS access_log_case ON access_log (case_id, at) WHERE case_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS access_log_key ON access_log (key_prefix, at);
