-- Segments by revenue; reads customer_totals, so it runs after that step.
CREATE TABLE IF NOT EXISTS analytics.customer_segments (
    segment    text PRIMARY KEY,
    customers  integer NOT NULL,
    revenue    numeric(12, 2) NOT NULL
);

DELETE FROM analytics.customer_segments;

INSERT INTO analytics.customer_segments (segment, customers, revenue)
SELECT CASE WHEN revenue >= 800 THEN 'high' WHEN revenue >= 600 THEN 'medium' ELSE 'low' END,
       count(*), sum(revenue)
FROM analytics.customer_totals
GROUP BY 1;
