-- Sample Snowplow-shaped events into atomic.events (what the Snowplow loader step will write).
-- Re-running adds nothing: event_id is the primary key.
CREATE SCHEMA IF NOT EXISTS atomic;

CREATE TABLE IF NOT EXISTS atomic.events (
    event_id          text PRIMARY KEY,
    collector_tstamp  timestamp NOT NULL,
    domain_userid     text,
    domain_sessionid  text,
    page_urlpath      text,
    event_name        text NOT NULL,
    user_id           text
);

INSERT INTO atomic.events
SELECT 'ev' || lpad(g::text, 6, '0'),
       timestamp '2026-01-05 08:00:00' + g * interval '97 seconds',
       'duid-' || (g % 23),
       'sess-' || (g % 23) || '-' || (g / 40),
       (ARRAY['/', '/pricing', '/docs', '/blog', '/signup'])[1 + g % 5],
       CASE WHEN g % 4 = 0 THEN 'page_ping' ELSE 'page_view' END,
       CASE WHEN g % 23 < 5 THEN 'u-00' || (1 + g % 23) ELSE '' END
FROM generate_series(1, 400) AS g
ON CONFLICT (event_id) DO NOTHING;
