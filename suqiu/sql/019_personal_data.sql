-- Personal information (个人信息): one AES-256 key per data subject (a submit's contact), wrapped
-- by the deployment's master key. `lookup` is a keyed HMAC of the contact, so a later appeal by
-- the same contact finds its subject without this table holding a phone number. Erasure deletes
-- the key and the lookup (crypto-shredding); the row stays, as a tombstone that says when and why.
CREATE TABLE IF NOT EXISTS personal_subjects (
    subject_id   uuid        PRIMARY KEY,
    lookup       bytea       UNIQUE,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL,
    erased_at    timestamptz,
    erase_reason text,
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);
-- A subject's cases, for erasure and retention: the case state names its subject.
CREATE INDEX IF NOT EXISTS case_view_subject ON case_view ((state->>'subject'))
    WHERE state->>'subject' IS NOT NULL;
