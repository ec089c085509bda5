-- Deadlines placed on provisional days (no State Council notice yet for their year).
--
-- provisional_from is the earliest first-provisional-day among an open case's provisional
-- deadlines (NULL for every other case); the SLA timers' calendar sweep re-plans the cases
-- whose provisional_from the running calendar now covers with official days. The partial
-- index holds only those cases: a few weeks' dispatches at year end.
ALTER TABLE case_view ADD COLUMN IF NOT EXISTS provisional_from date;
CREATE INDEX IF NOT EXISTS case_view_provisional ON case_view (provisional_from) WHERE provisional_from IS NOT NULL;
