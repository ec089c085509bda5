-- Cases whose events a read model could not store: every other case goes on, /v1/health
-- answers degraded and names them, and `suqiu replay rebuild` (after the cause is fixed) clears
-- them. The events stay in the store, untouched.
CREATE TABLE IF NOT EXISTS quarantined_cases (
    case_id   text        PRIMARY KEY,
    seq       integer     NOT NULL,  -- the first event the read models could not take
    error     text        NOT NULL,
    since     timestamptz NOT NULL
);
