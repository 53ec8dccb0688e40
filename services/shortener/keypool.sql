-- Every code the generator ever produced. A code is free while leased_at is NULL; leased codes stay
-- in the table so the generator can never produce them again (ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS key_pool (
    code       text PRIMARY KEY,
    leased_at  timestamptz
);
CREATE INDEX IF NOT EXISTS key_pool_free ON key_pool (code) WHERE leased_at IS NULL;
