-- 响应: an assignment is responded to by 签收 or by 退回, and released from the response rate
-- when it was taken away before it was due or moved by a reorganisation (suqiu.domain.response).
--   assignments.responded_at  the response (accept or return), NULL while none
--   assignments.released      not counted in the response rate
--   department_days.responded_on_time, .released  by the day of the assignment
ALTER TABLE assignments
    ADD COLUMN IF NOT EXISTS responded_at timestamptz,
    ADD COLUMN IF NOT EXISTS released boolean NOT NULL DEFAULT false;
ALTER TABLE department_days
    ADD COLUMN IF NOT EXISTS responded_on_time integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS released integer NOT NULL DEFAULT 0;

-- What the read models already hold carries over: every acceptance was a response. Returns and
-- releases before this migration count once `suqiu replay rebuild` folds the store again.
UPDATE assignments SET responded_at = accepted_at WHERE accepted_at IS NOT NULL;
UPDATE department_days SET responded_on_time = accepted_on_time WHERE accepted_on_time <> 0;

DROP INDEX IF EXISTS assignments_awaiting;
CREATE INDEX IF NOT EXISTS assignments_awaiting ON assignments (department, accept_due)
    WHERE responded_at IS NULL AND NOT released;
