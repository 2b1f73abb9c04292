"""`osds demo` (what `make demo` runs) in a copy of the project: its own PostgreSQL, Airflow home and summary."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from airflow_osds.superset.local import ensure_superset_venv
from tests.singer_plugins import TAP_POSTGRES, plugin

REPO_ROOT = Path(__file__).resolve().parents[2]
OSDS = str(Path(sys.executable).parent / "osds")


def test_osds_demo_runs_the_pipelines_and_prints_a_summary() -> None:
    project = Path(tempfile.mkdtemp(prefix="osds-demo-"))
    project.chmod(0o755)
    try:
        shutil.copytree(REPO_ROOT / "dags", project / "dags")
        # As in a fresh clone: no dbt target/ (the demo must write the manifest itself).
        shutil.copytree(REPO_ROOT / "include", project / "include", ignore=shutil.ignore_patterns("target", "logs"))
        # A home of its own: the demo must leave it untouched (no ~/airflow, no cache).
        home = project / "home"
        home.mkdir()
        from airflow_osds.venvs import CACHE_ENV, cache_dir

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OSDS_"))} | {"HOME": str(home)}
        # The component virtualenvs (the demo's tap-postgres) come from the cache outside the project, as
        # on a machine where the user set OSDS_VENV_CACHE: built once, not per demo run.
        env[CACHE_ENV] = str(cache_dir())
        # Built here, with the real home, when this machine has not built them yet: pip and the builds it
        # runs (Rust's toolchain for some sdists) write their own caches into $HOME, which is theirs.
        assert f"pip_url: {TAP_POSTGRES}" in (REPO_ROOT / "include" / "pipelines" / "ingest.yml").read_text()
        plugin("tap-postgres", TAP_POSTGRES)
        ensure_superset_venv()
        result = subprocess.run(
            [OSDS, "demo", "--project-dir", str(project)], capture_output=True, text=True, env=env, timeout=300
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert re.search(r"│ orders_daily\s+│ success", output), output
        assert re.search(r"│ customer_stats\s+│ success", output), output
        assert "warehouse:analytics.orders_daily" in output
        assert re.search(r"warehouse:raw\.orders\s+│\s+500 │", output), output
        assert "running pipeline customer_stats (its data comes from orders_daily)" in output
        assert re.search(r"warehouse:analytics\.customer_totals\s+│\s+37 │", output), output
        assert re.search(r"│ ingest\s+│ success", output), output
        assert "running pipeline web_analytics (its data comes from ingest)" in output
        assert re.search(r"│ web_analytics\s+│ success", output), output
        assert "dbt parse web_analytics" in output, "the demo writes the dbt manifest first"
        # The Snowplow step: 2,000 enriched lines, 6 of them bad on purpose → 1,994 events, each with
        # its web_page context; the marts are built from them (3 of the CRM's generated users qualify).
        assert re.search(r"warehouse:atomic\.events\s+│\s+1994 │", output), output
        assert re.search(r"warehouse:atomic\.com_snowplowanalytics_snowplow_web_page_1\s+│\s+1994 │", output), output
        assert re.search(r"warehouse:marts\.high_value_users\s+│\s+3 │", output), output
        # The CRM's contacts, replicated from its database by the Singer step (tap-postgres → osds-target-postgres).
        assert re.search(r"warehouse:raw_crm\.contacts\s+│\s+10 │", output), output
        # Reverse ETL: the 3 high-value users go into the CRM's vip_customers table; in the second round one
        # CRM contact upgrades, ingest and web_analytics run again (only the Singer step has new data: the
        # demo does not wait for event files nobody drops, the Snowplow load says it has nothing new, and dbt
        # still runs) and the sync sends that one update.
        assert "second round: " in output and "running ingest, web_analytics, crm_sync again" in output, output
        assert ("ingest.load_events.new_files: no enriched files at " in output
                and "not waiting for more (marked success)" in output), output
        assert "running pipeline crm_sync (its data comes from web_analytics)" in output
        assert re.search(r"│ 1\s+│ crm_sync\s+│\s+3 │\s+0 │\s+0 │\s+0 │\s+0 │", output), output
        assert re.search(r"│ 2\s+│ crm_sync\s+│\s+0 │\s+1 │\s+0 │\s+0 │\s+2 │", output), output
        # Superset: started from its cached virtualenv, the dashboard published over the marts, and the
        # `dashboards` pipeline (schedule: data on those marts) warms its three charts.
        assert "running pipeline dashboards (its data comes from web_analytics)" in output
        for chart, dataset in (("Sessions by landing", "marts.sessions"), ("Page views by day", "marts.daily_page_vie"),
                               ("High-value users by", "marts.high_value_use")):
            assert re.search(rf"│ dashboards\s+│ {chart}[^│]*│ {dataset}[^│]*│ warm\s+│", output), output
        assert "6 pipeline(s) succeeded (9 runs)" in output
        # Airflow's home, the compiled pipelines and the database live in the project, never in the user's home.
        assert list(home.iterdir()) == [], "Airflow or the cache wrote into the user's home"
        assert list((project / ".osds" / "cache").glob("*.osdsc")), "the compiled pipelines are in .osds/cache"
        assert not (project / "include" / "pipelines" / ".osds_cache").exists()
        assert (project / ".osds" / "postgres" / "data" / "PG_VERSION").exists()
        # The PostgreSQL password stays in its 0600 file: neither the terminal nor a task log shows it.
        password_file = project / ".osds" / "postgres" / "superuser.password"
        password = password_file.read_text().strip()
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600 and len(password) >= 40
        assert password not in output, "the demo printed the PostgreSQL password"
        # Nor any other file of the project's state (databases, Airflow's home, Superset's, caches).
        files = [p for p in (project / ".osds").rglob("*") if p.is_file() and p != password_file]
        assert len(files) > 100 and not [p for p in files if password.encode() in p.read_bytes()]
        # The servers were stopped at the end.
        assert not (project / ".osds" / "postgres" / "data" / "postmaster.pid").exists()
        assert not (project / ".osds" / "superset" / "superset.pid").exists()
    finally:
        from airflow_osds.embedded import EmbeddedPostgres

        EmbeddedPostgres(project / ".osds" / "postgres").destroy()
        shutil.rmtree(project, ignore_errors=True)
