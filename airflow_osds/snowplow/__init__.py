"""Snowplow enriched events into PostgreSQL: the TSV format, Iglu schemas, entity tables, bad rows, the loader (no Airflow imports)."""
