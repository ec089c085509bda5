-- The foreign key cost a lookup in events for every stored event (~7 µs each in PostgreSQL,
-- measured with bench.importer), and guarded nothing the write path does not already:
-- outbox rows are only ever inserted from events in the same transaction. The relay
-- reports a queued position whose event has gone (an edited store) instead.
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_position_fkey;
