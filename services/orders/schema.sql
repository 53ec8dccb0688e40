-- Tables of one orders variant; each variant runs in its own schema (orders_naive, orders_hardened).
-- Idempotent: applied at every start.

CREATE TABLE IF NOT EXISTS flash_sales (
    sku           text PRIMARY KEY,
    stock         integer NOT NULL CHECK (stock >= 0),
    price_cents   integer NOT NULL CHECK (price_cents >= 0),
    opened_at     timestamptz NOT NULL DEFAULT now(),
    -- Where the variant's topics ended when the sale opened, {"topic": {"partition": offset}}: the
    -- audit reads from there, not from the beginning. NULL when the broker did not answer.
    event_offsets jsonb
);
-- Labs whose tables predate the column.
ALTER TABLE flash_sales ADD COLUMN IF NOT EXISTS event_offsets jsonb;

-- The hardened variant's stock; the naive variant asks the inventory service instead.
CREATE TABLE IF NOT EXISTS inventory (
    sku       text PRIMARY KEY,
    available integer NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    order_id     uuid PRIMARY KEY,
    sku          text NOT NULL,
    customer_id  text NOT NULL,
    quantity     integer NOT NULL,
    amount_cents integer NOT NULL,
    status       text NOT NULL,
    charge_id    text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    paid_at      timestamptz
);
CREATE INDEX IF NOT EXISTS orders_sku_customer ON orders (sku, customer_id);

-- Transactional outbox: written in the order's transaction, relayed to Kafka afterwards.
-- xid is the writing transaction's id: the relay only takes rows whose transaction is older than
-- every transaction still running, so a transaction that commits late is never skipped.
CREATE TABLE IF NOT EXISTS outbox (
    id           bigserial PRIMARY KEY,
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    aggregate_id text NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    customer_id     text NOT NULL,
    key             text NOT NULL,
    sku             text NOT NULL,
    fingerprint     text NOT NULL,
    response_status integer,
    response_body   jsonb,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at);

-- Consumer inbox: one row per (consumer, message); a redelivery finds its row and is skipped.
CREATE TABLE IF NOT EXISTS inbox (
    consumer     text NOT NULL,
    message_id   text NOT NULL,
    deliveries   integer NOT NULL DEFAULT 1,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

CREATE TABLE IF NOT EXISTS notifications (
    order_id   uuid PRIMARY KEY,
    channel    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Notify the relay when outbox rows commit (NOTIFY is delivered at commit, once per transaction).
CREATE OR REPLACE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orders_outbox', '');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();
