-- Click batches already added to links.clicks: a batch written again after its commit went unconfirmed
-- adds nothing twice.
CREATE TABLE IF NOT EXISTS click_batches (
    batch_id    text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
