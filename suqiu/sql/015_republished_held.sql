-- After a republish of the store, how far each partition's republished history is already in
-- the read models (streams/catchup.py): the relay writes it as it publishes, and the projector
-- skips to there instead of reading that history again. Emptied by each republish.
CREATE TABLE IF NOT EXISTS republished_held (
    topic     text    NOT NULL,
    partition integer NOT NULL,
    "offset"  bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
