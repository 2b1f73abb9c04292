"""Regenerate ``manifest.json`` and ``run_results.json`` from the tiny dbt project in ``project/``.

Run from the repository root: ``.venv/bin/python tests/unit/dbt/data/regenerate.py``.
It runs ``dbt build`` against a throw-away embedded PostgreSQL, so the run results are real
(including one ``error``, one ``fail`` and one ``skipped`` node, on purpose).

It also records what ``dbt ls`` selects for :data:`LS_CASES` in ``dbt_ls_expected.json``, so the
tests check :func:`airflow_osds.dbt.selection.select_nodes` against dbt itself. ``--ls-only``
refreshes just that file (no database needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from airflow_osds.embedded import EmbeddedPostgres

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
DBT = Path(sys.executable).with_name("dbt")

#: (select, exclude) pairs whose ``dbt ls`` output is recorded.
LS_CASES: list[tuple[str, str]] = [
    ("customer_totals", ""),
    ("shop.marts", ""),
    ("raw_*", ""),
    ("path:models/staging", ""),
    ("models/marts/orders_enriched.sql", ""),
    ("file:customer_totals", ""),
    ("tag:daily", ""),
    ("source:snowplow+", ""),
    ("source:snowplow.events+1", ""),
    ("resource_type:snapshot", ""),
    ("config.materialized:ephemeral", ""),
    ("+customer_totals", ""),
    ("1+customer_totals", ""),
    ("stg_orders+", ""),
    ("raw_orders+1", ""),
    ("+stg_events+", ""),
    ("@stg_customers", ""),
    ("tag:daily,path:models/marts", ""),
    ("customer_totals orders_enriched", ""),
    ("not_null_orders_enriched_first_name", ""),
    ("path:models", "tag:daily"),
    ("+customer_totals", "+stg_orders"),
    ("stg_orders", "unique_stg_orders_order_id"),
]


def _record_dbt_ls() -> None:
    # Imported here: dbt is slow to import and only this script needs it.
    from dbt.cli.main import dbtRunner

    runner = dbtRunner()
    expected: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="osds-dbt-ls-") as tmp:
        for select, exclude in LS_CASES:
            args = ["ls", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target-path", tmp,
                    "--select", *select.split(), "--output", "json", "--output-keys", "unique_id", "--quiet",
                    "--resource-types", "model", "seed", "snapshot", "test"]
            if exclude:
                args += ["--exclude", *exclude.split()]
            result = runner.invoke(args)
            if not result.success:
                raise SystemExit(f"dbt ls failed for {select!r} / {exclude!r}: {result.exception}")
            ids = sorted(json.loads(line)["unique_id"] for line in result.result)
            expected.append({"select": select, "exclude": exclude, "unique_ids": ids})
    (HERE / "dbt_ls_expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def _write_slim_manifest(source: Path, dest: Path) -> None:
    """Copy the manifest without dbt's ~500 KB of built-in macros and docs, which nothing here reads."""
    manifest = json.loads(source.read_text())
    manifest["macros"] = {}
    manifest["docs"] = {}
    dest.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def main() -> None:
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    _record_dbt_ls()
    if "--ls-only" in sys.argv:
        shutil.rmtree(PROJECT / "logs", ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix="osds-dbt-fixture-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg").start()
        try:
            pg.create_database("dbt")
            env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_PG_PORT": str(pg.port)}
            target = Path(tmp) / "target"
            common = ["--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target-path", str(target)]
            # `dbt build` exits 1 because of the deliberate failures: that is expected.
            subprocess.run([str(DBT), "build", *common], env=env, check=False)
            _write_slim_manifest(target / "manifest.json", HERE / "manifest.json")
            shutil.copyfile(target / "run_results.json", HERE / "run_results.json")
        finally:
            pg.destroy()
    shutil.rmtree(PROJECT / "target", ignore_errors=True)
    shutil.rmtree(PROJECT / "logs", ignore_errors=True)


if __name__ == "__main__":
    main()
