-- During a republish, the partitions whose republished records the read models have held so far
-- (streams/catchup.py), so that a relay taking over mid-republish goes on measuring the held
-- prefix instead of stopping; NULL when no republish is under way.
ALTER TABLE relay_state ADD COLUMN IF NOT EXISTS republish_open integer[];
