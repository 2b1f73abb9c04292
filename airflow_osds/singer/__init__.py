"""Singer EL: taps and targets in their own virtualenvs, state in the warehouse, and ``osds-target-postgres`` (no Airflow imports)."""
