-- What a key is bound to: an enterprise key to the enterprises (USCC) it speaks for, an intake
-- key to the source systems it submits for. Empty: not bound (an enterprise key then sees no case).
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS usccs text[] NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS source_systems text[] NOT NULL DEFAULT '{}';
