-- Gatherings (座谈会, 上门问需, 领导走访, 双万双服): recorded once each; their appeals name them in
-- AppealSubmitted.gathering, so a gathering's cases come from the read models.
CREATE TABLE IF NOT EXISTS gatherings (
    gathering_id text        PRIMARY KEY,
    kind         text        NOT NULL,
    held_on      date        NOT NULL,
    jurisdiction text        NOT NULL,
    theme        text        NOT NULL,
    host         text        NOT NULL,
    participants jsonb       NOT NULL,
    recorded_by  text        NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS case_view_gathering ON case_view ((state->>'gathering'))
    WHERE state->>'gathering' IS NOT NULL;
