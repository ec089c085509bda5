-- Handling-time percentiles (办理时长) at any history. A year of a city's replies is hundreds
-- of thousands of rows, too many to sort per request. Each reply's handling time falls in a
-- bucket 5 % wide; handling_months counts the replies per (department, month, bucket). A
-- percentile finds its bucket from those counts and then reads only that bucket's replies
-- (replies_bucket), so it stays exact while reading a few thousand rows.
CREATE OR REPLACE FUNCTION handling_bucket(minutes double precision) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT floor(ln(1 + greatest(minutes, 0)) / ln(1.05))::integer $$;

CREATE TABLE IF NOT EXISTS handling_months (
    department text    NOT NULL,
    month      date    NOT NULL,  -- the first Asia/Shanghai day of the month of the replies
    bucket     integer NOT NULL,  -- handling_bucket(handling_minutes)
    replies    integer NOT NULL,
    PRIMARY KEY (department, month, bucket)
);

CREATE INDEX IF NOT EXISTS replies_bucket ON replies (department, handling_bucket(handling_minutes), replied_at)
    INCLUDE (handling_minutes) WHERE handling_minutes IS NOT NULL;

INSERT INTO handling_months (department, month, bucket, replies)
SELECT department, date_trunc('month', replied_at AT TIME ZONE 'Asia/Shanghai')::date,
       handling_bucket(handling_minutes), count(*)
  FROM replies WHERE handling_minutes IS NOT NULL GROUP BY 1, 2, 3
ON CONFLICT DO NOTHING;

-- The load (open, due soon, overdue, supervised) reads only open cases; the overdue list and
-- the board read them by deadline (closed cases have no next_due).
CREATE INDEX IF NOT EXISTS case_view_open ON case_view (department) INCLUDE (next_due, warn_at, warned, breached, supervised)
    WHERE status NOT IN ('closed', 'withdrawn');
CREATE INDEX IF NOT EXISTS case_view_next_due ON case_view (next_due, case_id) WHERE next_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS case_view_due_list ON case_view (submitted_at, case_id) WHERE next_due IS NOT NULL;
