"""Snowplow enriched events into PostgreSQL: the TSV format, Iglu schemas, entity tables, bad rows, the loader (no Airflow imports)."""

#: Lines per transaction: ≈130 MB peak for 2 KB lines, two chunks in flight; larger chunks load no faster.
DEFAULT_CHUNK_LINES = 5_000
#: Lines a load parses in its own process before its parsing helper process takes over (a small file never starts one).
DEFAULT_HELPER_AFTER_LINES = 2 * DEFAULT_CHUNK_LINES
#: A load fails when more than this fraction of its lines are bad (after loading the good ones).
DEFAULT_MAX_BAD_RATIO = 0.01
