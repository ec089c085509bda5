-- The source system's own reference (the 12345 工单编号, …) on the case list, so the board and
-- the list can find a case by the number an enterprise or an operator quotes.
ALTER TABLE case_view ADD COLUMN IF NOT EXISTS source_system text;
ALTER TABLE case_view ADD COLUMN IF NOT EXISTS source_ref text;
UPDATE case_view SET source_system = state->>'source_system', source_ref = state->>'source_ref'
 WHERE source_ref IS NULL AND state ? 'source_ref';
CREATE INDEX IF NOT EXISTS case_view_source_ref ON case_view (source_ref) WHERE source_ref <> '';
