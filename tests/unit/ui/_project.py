"""The pipelines of the data-stack view's tests: the unit tests read them, the e2e test runs two of them.

orders → shop.orders ⇒ stats (schedule: data) → shop.order_stats ⇢ publish → a Superset dashboard and
a CRM object; broken.yml is invalid.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

PIPELINES = {
    "orders.yml": """\
        pipeline: orders
        steps:
          load:
            sql: |
              CREATE SCHEMA IF NOT EXISTS shop;
              CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, amount numeric NOT NULL);
              INSERT INTO shop.orders VALUES (1, 10.5), (2, 20) ON CONFLICT (id) DO NOTHING;
        """,
    "stats.yml": """\
        pipeline: stats
        schedule: data
        steps:
          count:
            sql: |
              CREATE TABLE IF NOT EXISTS shop.order_stats (counted_at timestamptz NOT NULL, orders bigint NOT NULL);
              INSERT INTO shop.order_stats SELECT now(), count(*) FROM shop.orders;
        """,
    # Never run by the tests (no Superset, no CRM): its nodes are drawn all the same.
    "publish.yml": """\
        pipeline: publish
        steps:
          warm:
            superset: {connection: bi, dashboards: [sales], tables: [shop.order_stats]}
          sync:
            reverse_etl:
              source: {table: shop.order_stats, key: counted_at}
              fields: {orders: orders}
              destination: {kind: http, connection: crm, path: /stats}
        """,
    # Line 4, column 5: `sqll` is a typo of `sql`.
    "broken.yml": """\
        pipeline: broken
        steps:
          oops:
            sqll: SELECT 1
        """,
}


def write_pipelines(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in PIPELINES.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder
