-- 500 deterministic sample orders; re-running adds nothing (primary key + ON CONFLICT).
CREATE SCHEMA IF NOT EXISTS raw;

CREATE TABLE IF NOT EXISTS raw.orders (
    order_id    integer PRIMARY KEY,
    customer_id integer NOT NULL,
    ordered_at  timestamptz NOT NULL,
    amount      numeric(10, 2) NOT NULL
);

INSERT INTO raw.orders (order_id, customer_id, ordered_at, amount)
SELECT g,
       1 + g % 37,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '71 minutes',
       round(5 + (g * 7919 % 1000) / 10.0, 2)
FROM generate_series(1, 500) AS g
ON CONFLICT (order_id) DO NOTHING;
