-- 智能分拨: routing models trained on the store's own history (suqiu classify train). Every model
-- stays, with its metrics, for audit; one is active. `model` is an npz of plain arrays (no pickle),
-- `signature` a keyed digest under the master key (suqiu.base.sealing): a changed row is refused.
CREATE TABLE IF NOT EXISTS routing_models (
    version     text        PRIMARY KEY,
    trained_at  timestamptz NOT NULL,
    window_from timestamptz NOT NULL,  -- the first and last submission the model learnt from
    window_to   timestamptz NOT NULL,
    org_version integer     NOT NULL,  -- the organisation the labels were mapped through
    cases       integer     NOT NULL,
    metrics     jsonb       NOT NULL,  -- held-out figures per head, and the old model's on the same cases
    model       bytea       NOT NULL,
    signature   bytea       NOT NULL,
    active      boolean     NOT NULL DEFAULT false,
    decision    text        NOT NULL   -- why it is active or not
);
CREATE UNIQUE INDEX IF NOT EXISTS routing_models_one_active ON routing_models (active) WHERE active;

-- Duplicates (重复件) are looked for among the open cases of the same enterprise, or of the same
-- jurisdiction within a window.
CREATE INDEX IF NOT EXISTS case_view_open_enterprise ON case_view (enterprise_uscc)
    WHERE status NOT IN ('closed', 'withdrawn');
CREATE INDEX IF NOT EXISTS case_view_open_jurisdiction ON case_view (jurisdiction, submitted_at)
    WHERE status NOT IN ('closed', 'withdrawn');
