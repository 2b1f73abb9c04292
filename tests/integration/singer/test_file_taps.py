"""File taps from PyPI through :func:`airflow_osds.singer.sync.sync` into osds-target-postgres: tap-csv-folder
(every field a string, plus its _sdc_ columns) and tap-jsonl, with the state kept in the warehouse."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from airflow_osds.singer import state
from airflow_osds.singer.sync import Plugin, sync

from tests.singer_plugins import TAP_CSV_FOLDER, plugin


def _target(warehouse: Any, schema: str) -> Plugin:
    pg = warehouse.stack.postgres.airflow_connection(warehouse.dbname)
    return Plugin(name="osds-target-postgres", command=(str(Path(sys.executable).parent / "osds-target-postgres"),),
                  config={"host": pg["host"], "port": pg["port"], "user": pg["login"], "password": pg["password"],
                          "database": warehouse.dbname,
                          "default_target_schema": schema})


def test_tap_csv_folder_loads_every_row_and_the_state_is_kept(warehouse: Any, tmp_path: Path) -> None:
    tap_path = plugin("tap-csv-folder", TAP_CSV_FOLDER)
    data = tmp_path / "csv"
    data.mkdir()
    (data / "contacts.csv").write_text("id,email,plan\n" + "".join(f"{i},u{i}@example.com,{'pro' if i % 2 else 'free'}\n"
                                                                 for i in range(1, 1201)))
    tap = Plugin(name="tap-csv-folder", command=(str(tap_path),),
                 config={"path": str(data), "read_mode": "merge", "stream_name": "contacts_csv", "lineterminator": "\n"})
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS raw_csv CASCADE")
        report = sync(conn, tap, _target(warehouse, "raw_csv"), state_id="test:csv:tap-csv-folder-to-osds")
        assert report.record_counts == {"contacts_csv": 1200}
        rows = conn.execute("SELECT count(*), count(DISTINCT id), min(id::int), max(id::int), "
                            "count(*) FILTER (WHERE plan = 'pro') FROM raw_csv.contacts_csv").fetchone()
        assert rows == (1200, 1200, 1, 1200, 600)
        columns = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                             "table_schema = 'raw_csv' AND table_name = 'contacts_csv'")]
        assert {"id", "email", "plan", "_sdc_path", "_sdc_line_number"} <= set(columns)
        assert report.run.state is not None and state.get(conn, report.state_id) == report.run.state
