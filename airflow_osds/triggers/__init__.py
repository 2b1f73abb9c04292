"""Triggers: the waiting half of deferrable operators and sensors, run by Airflow's triggerer."""
