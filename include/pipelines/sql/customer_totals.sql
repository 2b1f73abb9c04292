-- One row per customer, rebuilt in one transaction (re-runs replace rows).
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE IF NOT EXISTS analytics.customer_totals (
    customer_id  integer PRIMARY KEY,
    orders       integer NOT NULL,
    revenue      numeric(12, 2) NOT NULL,
    first_order  timestamptz NOT NULL,
    last_order   timestamptz NOT NULL
);

DELETE FROM analytics.customer_totals;

INSERT INTO analytics.customer_totals (customer_id, orders, revenue, first_order, last_order)
SELECT customer_id, count(*), sum(amount), min(ordered_at), max(ordered_at)
FROM raw.orders
GROUP BY customer_id;
