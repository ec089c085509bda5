-- Dead letters too large to re-publish (the producer's request limit): kept here, whole, and
-- announced on the DLQ topic by a small record whose suqiu.dlq.stored header names the row.
CREATE TABLE IF NOT EXISTS dead_letters (
    id           bigserial   PRIMARY KEY,
    source_topic text        NOT NULL,
    key          bytea,
    value        bytea       NOT NULL,
    headers      jsonb       NOT NULL,
    reason       text        NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now()
);
