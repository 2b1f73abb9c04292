-- Rebuilt in one transaction, so a re-run replaces the rows instead of duplicating them.
CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE IF NOT EXISTS analytics.orders_daily (
    order_date date PRIMARY KEY,
    orders     integer NOT NULL,
    customers  integer NOT NULL,
    revenue    numeric(12, 2) NOT NULL
);

DELETE FROM analytics.orders_daily;

INSERT INTO analytics.orders_daily (order_date, orders, customers, revenue)
SELECT (ordered_at AT TIME ZONE 'UTC')::date, count(*), count(DISTINCT customer_id), sum(amount)
FROM raw.orders
GROUP BY 1;
