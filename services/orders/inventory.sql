-- The inventory service's stock (schema orders_inventory).
CREATE TABLE IF NOT EXISTS stock (
    sku       text PRIMARY KEY,
    available integer NOT NULL
);
