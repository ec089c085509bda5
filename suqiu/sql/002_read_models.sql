-- Read models kept by the Faust projector. Each row carries the case seq it reflects:
-- a redelivered event (seq already applied) changes nothing. Rebuildable from `events`.
CREATE TABLE IF NOT EXISTS case_view (
    case_id         text PRIMARY KEY,
    seq             integer     NOT NULL,
    status          text        NOT NULL,
    department      text,
    jurisdiction    text        NOT NULL,
    category        text        NOT NULL,
    priority        text        NOT NULL,
    channel         text        NOT NULL,
    title           text        NOT NULL,
    enterprise_uscc text        NOT NULL,
    enterprise_name text        NOT NULL,
    submitted_at    timestamptz NOT NULL,
    assigned_at     timestamptz,
    accept_due      timestamptz,
    resolve_due     timestamptz,
    follow_up_due   timestamptz,
    next_due        timestamptz,          -- earliest deadline of the running clocks
    warn_at         timestamptz,          -- earliest warning instant of the running clocks
    warned          boolean     NOT NULL, -- a running clock has its 临期预警
    breached        boolean     NOT NULL, -- a running clock has its 超期
    supervised      boolean     NOT NULL,
    reopen_count    integer     NOT NULL,
    closed_at       timestamptz,
    outcome         text,
    rating          text,
    state           jsonb       NOT NULL, -- the evolved case, to continue from
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS case_view_list ON case_view (submitted_at, case_id);
CREATE INDEX IF NOT EXISTS case_view_department ON case_view (department, submitted_at, case_id);
CREATE INDEX IF NOT EXISTS case_view_status ON case_view (status, submitted_at, case_id);

CREATE TABLE IF NOT EXISTS case_timeline (
    case_id          text        NOT NULL,
    seq              integer     NOT NULL,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    actor_system     text        NOT NULL,
    actor_role       text        NOT NULL,
    actor_department text,
    actor_person     text,
    data             jsonb       NOT NULL,
    PRIMARY KEY (case_id, seq)
);

-- One row per SLA event a running clock still owes; the timers fire what falls due.
CREATE TABLE IF NOT EXISTS sla_timers (
    case_id   text        NOT NULL,
    clock     text        NOT NULL,
    kind      text        NOT NULL,
    fire_at   timestamptz NOT NULL,
    due_at    timestamptz NOT NULL,
    partition integer     NOT NULL,
    PRIMARY KEY (case_id, clock, kind)
);
CREATE INDEX IF NOT EXISTS sla_timers_due ON sla_timers (partition, fire_at);

-- Facts behind the department figures: one row per assignment (派单/转办/重办) ...
CREATE TABLE IF NOT EXISTS assignments (
    case_id     text        NOT NULL,
    seq         integer     NOT NULL,
    department  text        NOT NULL,
    assigned_at timestamptz NOT NULL,
    accept_due  timestamptz NOT NULL,
    accepted_at timestamptz,
    PRIMARY KEY (case_id, seq)
);
CREATE INDEX IF NOT EXISTS assignments_department ON assignments (department, assigned_at);

-- ... and one per closure (办结), with its rating and whether it was reopened.
CREATE TABLE IF NOT EXISTS closures (
    case_id          text        NOT NULL,
    cycle            integer     NOT NULL,
    department       text,
    closed_at        timestamptz NOT NULL,
    outcome          text        NOT NULL,
    replied_at       timestamptz,
    resolve_due      timestamptz,
    handling_minutes double precision,  -- working minutes from assignment to reply
    rating           text,
    reopened         boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (case_id, cycle)
);
CREATE INDEX IF NOT EXISTS closures_department ON closures (department, closed_at);

-- Checkpoints, in the same transaction as the rows; the relay records the heads it wrote.
CREATE TABLE IF NOT EXISTS projection_offsets (
    projection text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    applied    bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (projection, topic, partition)
);

CREATE TABLE IF NOT EXISTS relay_offsets (
    topic     text    NOT NULL,
    partition integer NOT NULL,
    "offset"  bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- Every SLA policy a worker has run, so a change can say which goals it replaces.
CREATE TABLE IF NOT EXISTS sla_policy_versions (
    version        text PRIMARY KEY,
    document       text        NOT NULL,
    activated_at   timestamptz NOT NULL,
    rolled_out_at  timestamptz
);
