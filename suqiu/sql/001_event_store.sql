-- The durable record: events (append-only, hash-chained per case), idempotency, outbox.
CREATE TABLE IF NOT EXISTS events (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id     text        NOT NULL,
    seq         integer     NOT NULL CHECK (seq > 0),
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    command_id  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    data        bytea       NOT NULL,  -- Avro single-object bytes, exactly as published
    hash        bytea       NOT NULL,
    CONSTRAINT events_case_seq UNIQUE (case_id, seq)
);

CREATE TABLE IF NOT EXISTS commands (
    command_id   text PRIMARY KEY,
    case_id      text  NOT NULL,
    request_hash bytea NOT NULL,   -- a reused command_id with other content is refused
    result       jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS source_refs (
    source_system text NOT NULL,
    source_ref    text NOT NULL,
    case_id       text NOT NULL,
    command_id    text NOT NULL,
    PRIMARY KEY (source_system, source_ref)
);

-- Rows wait here until the relay has them acknowledged by the broker.
CREATE TABLE IF NOT EXISTS outbox (
    position bigint PRIMARY KEY REFERENCES events (position)
);

-- The relay's broker epoch: a token it also leaves on the broker; see streams/relay.py.
CREATE TABLE IF NOT EXISTS relay_state (
    topic          text PRIMARY KEY,
    epoch          text,
    republished_at timestamptz
);

CREATE TABLE IF NOT EXISTS jurisdictions (
    code   text PRIMARY KEY,
    name   text NOT NULL,
    level  text NOT NULL CHECK (level IN ('city', 'district', 'zone', 'street')),
    parent text REFERENCES jurisdictions (code)
);

CREATE TABLE IF NOT EXISTS departments (
    code         text PRIMARY KEY,
    name         text NOT NULL,
    jurisdiction text NOT NULL REFERENCES jurisdictions (code)
);

CREATE TABLE IF NOT EXISTS api_keys (
    key_hash   bytea PRIMARY KEY,   -- SHA-256 of the secret; the secret itself is never stored
    key_prefix text NOT NULL,       -- first characters, to name a key in logs and listings
    system_id  text NOT NULL,
    role       text NOT NULL,
    department text,
    label      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
