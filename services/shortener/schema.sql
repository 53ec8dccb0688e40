-- Links of one variant; the variant's PostgreSQL schema is selected by search_path.
-- A deleted link keeps its row (deleted_at) so its code answers 410 and is never reused.
CREATE TABLE IF NOT EXISTS links (
    code        text PRIMARY KEY,
    long_url    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    deleted_at  timestamptz,
    clicks      bigint NOT NULL DEFAULT 0
);
