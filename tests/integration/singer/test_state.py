"""Singer state in the warehouse, and ``osds singer state`` managing it, on the embedded PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_osds.singer import state


def test_state_is_stored_replaced_listed_and_cleared(warehouse: Any) -> None:
    sid = state.state_id("crm", "extract", "tap-postgres", "osds-target-postgres")
    assert sid == "crm:extract:tap-postgres-to-osds-target-postgres"
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        assert state.get(conn, sid) is None
        state.put(conn, sid, {"bookmarks": {"public-contacts": {"replication_key_value": 10}}})
        state.put(conn, sid, {"bookmarks": {"public-contacts": {"replication_key_value": 12}}})
        assert state.get(conn, sid) == {"bookmarks": {"public-contacts": {"replication_key_value": 12}}}
        assert [s.state_id for s in state.list_states(conn)] == [sid]
        assert state.clear(conn, sid) is True and state.clear(conn, sid) is False
        assert state.get(conn, sid) is None


def _osds(warehouse: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW_CONN_WAREHOUSE": warehouse.stack.postgres.airflow_connection_env(warehouse.dbname)}
    return subprocess.run([str(Path(sys.executable).parent / "osds"), "singer", "state", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_sets_gets_lists_and_clears(warehouse: Any, tmp_path: Path) -> None:
    sid = "demo:crm:tap-jsonl-to-osds-target-postgres"
    (tmp_path / "state.json").write_text(json.dumps({"bookmarks": {"events": {"id": 7}}}))
    done = _osds(warehouse, "set", sid, f"@{tmp_path / 'state.json'}")
    assert done.returncode == 0, done.stderr
    got = _osds(warehouse, "get", sid)
    assert got.returncode == 0 and json.loads(got.stdout) == {"bookmarks": {"events": {"id": 7}}}
    listed = _osds(warehouse, "list")
    assert listed.returncode == 0 and listed.stdout.startswith(f"{sid}\t") and listed.stdout.rstrip().endswith("bytes")
    assert _osds(warehouse, "clear", sid).stdout.strip() == f"state of {sid} cleared"
    missing = _osds(warehouse, "get", sid)
    assert missing.returncode == 1 and f"no state for {sid!r}" in missing.stderr
    bad = _osds(warehouse, "set", sid, "{not json")
    assert bad.returncode == 2 and "the state is not JSON" in bad.stderr
    assert _osds(warehouse, "get").returncode == 2


def test_set_takes_what_meltano_state_get_prints(warehouse: Any) -> None:
    sid = "demo:crm:from-meltano"
    done = _osds(warehouse, "set", sid, json.dumps({"singer_state": {"bookmarks": {"orders": {"id": 9}}}}))
    assert done.returncode == 0 and "unwrapped Meltano's" in done.stderr, done.stderr
    assert json.loads(_osds(warehouse, "get", sid).stdout) == {"bookmarks": {"orders": {"id": 9}}}
