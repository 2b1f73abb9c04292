"""dbt engine: manifest / run-results parsing, node selection and graph rendering.

Nothing here imports dbt or Airflow: this code runs at DAG-parse time for projects with
thousands of models, where importing dbt (≈1 s) or running ``dbt ls`` would dominate.
Import the submodules directly (``airflow_osds.dbt.artifacts``, ``.selection``, ``.graph``).
"""

from __future__ import annotations
