-- The demo's "CRM": an application database the `replicate_crm` Singer step (tap-postgres) copies into
-- the warehouse's raw_crm schema. `osds demo` creates the database `crm_source` and runs this file
-- in it (idempotent: it recreates the tables).
DROP TABLE IF EXISTS contacts;
CREATE TABLE contacts (
    user_id        text PRIMARY KEY,
    email          text NOT NULL,
    full_name      text NOT NULL,
    plan           text NOT NULL,
    lifetime_value numeric(12, 2) NOT NULL,
    updated_at     timestamptz NOT NULL
);
INSERT INTO contacts (user_id, email, full_name, plan, lifetime_value, updated_at) VALUES
    ('u-001', 'ada@example.com', 'Ada Lovelace', 'enterprise', 12500.00, timestamptz '2026-11-20 09:00:00+00'),
    ('u-002', 'alan@example.com', 'Alan Turing', 'free', 0.00, timestamptz '2026-11-21 09:01:00+00'),
    ('u-003', 'grace@example.com', 'Grace Hopper', 'pro', 2400.00, timestamptz '2026-11-22 09:02:00+00'),
    ('u-004', 'edsger@example.com', 'Edsger Dijkstra', 'pro', 480.00, timestamptz '2026-11-23 09:03:00+00'),
    ('u-005', 'barbara@example.com', 'Barbara Liskov', 'enterprise', 9800.00, timestamptz '2026-11-20 09:04:00+00'),
    ('customer-72212', 'mary@example.com', 'Mary Jackson', 'enterprise', 15200.00, timestamptz '2026-11-21 09:05:00+00'),
    ('customer-53144', 'katherine@example.com', 'Katherine Johnson', 'pro', 2400.00, timestamptz '2026-11-22 09:06:00+00'),
    ('customer-38799', 'dorothy@example.com', 'Dorothy Vaughan', 'free', 0.00, timestamptz '2026-11-23 09:07:00+00'),
    ('customer-25160', 'margaret@example.com', 'Margaret Hamilton', 'pro', 480.00, timestamptz '2026-11-20 09:08:00+00'),
    ('customer-61245', 'annie@example.com', 'Annie Easley', 'enterprise', 9800.00, timestamptz '2026-11-21 09:09:00+00');

-- What the `crm_sync` pipeline writes back (reverse ETL): the warehouse's high-value users.
DROP TABLE IF EXISTS vip_customers;
CREATE TABLE vip_customers (
    user_id        text PRIMARY KEY,
    email          text NOT NULL,
    full_name      text NOT NULL,
    plan           text NOT NULL,
    lifetime_value numeric(12, 2) NOT NULL,
    sessions       integer NOT NULL,
    segments       jsonb NOT NULL DEFAULT '[]'
);
