-- Figures by period (月度/季度/年度): what each department did on each Asia/Shanghai day, kept
-- by the projector as it applies events, so a month, a quarter or years of history cost a few
-- hundred rows to sum rather than a scan of every assignment and closure.
--   by the day of the assignment (派单/转办/重办): assigned, accepted, accepted_on_time
--   by the day it happened: acceptances, replied, replied_on_time, closed, resolved, handled,
--   reopened (a handled closure reopened that day), rated, satisfied, breached (超期, by its deadline)
CREATE TABLE IF NOT EXISTS department_days (
    department       text    NOT NULL,
    day              date    NOT NULL,
    assigned         integer NOT NULL DEFAULT 0,
    accepted         integer NOT NULL DEFAULT 0,
    accepted_on_time integer NOT NULL DEFAULT 0,
    acceptances      integer NOT NULL DEFAULT 0,
    replied          integer NOT NULL DEFAULT 0,
    replied_on_time  integer NOT NULL DEFAULT 0,
    closed           integer NOT NULL DEFAULT 0,
    resolved         integer NOT NULL DEFAULT 0,
    handled          integer NOT NULL DEFAULT 0,
    reopened         integer NOT NULL DEFAULT 0,
    rated            integer NOT NULL DEFAULT 0,
    satisfied        integer NOT NULL DEFAULT 0,
    breached         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (department, day)
);

-- One row per reply (答复), when it was given: handling time and the on-time rate count replies,
-- whether or not the case has been closed yet.
CREATE TABLE IF NOT EXISTS replies (
    case_id          text        NOT NULL,
    seq              integer     NOT NULL,
    department       text        NOT NULL,
    replied_at       timestamptz NOT NULL,
    resolve_due      timestamptz,
    handling_minutes double precision,  -- working minutes from assignment to reply
    PRIMARY KEY (case_id, seq)
);
CREATE INDEX IF NOT EXISTS replies_department ON replies (department, replied_at) INCLUDE (handling_minutes);

-- The assignments still inside their accept window: the only ones whose response is not yet due.
CREATE INDEX IF NOT EXISTS assignments_awaiting ON assignments (department, accept_due) WHERE accepted_at IS NULL;

-- Read models built before this migration have no daily facts: `suqiu replay rebuild` folds them
-- from the store. Until then the figures cover only what is projected from now on.
