-- The payment gateway simulator's ledger (schema orders_gateway): every charge it ever made.
CREATE TABLE IF NOT EXISTS charges (
    charge_id       uuid PRIMARY KEY,
    order_id        text NOT NULL,
    amount_cents    integer NOT NULL,
    currency        text NOT NULL,
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS charges_order ON charges (order_id);
