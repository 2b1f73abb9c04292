"""``tap | target`` through the runner: real processes joined by an OS pipe, a real PyPI tap in its own
virtualenv, ``osds-target-postgres`` on the embedded PostgreSQL. The failing taps and targets below are
small scripts: fault injection, a real tap cannot be made to die mid-stream on demand."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.singer.plugins import PluginError, env_name, executable
from airflow_osds.singer.runner import SingerError, run_pipe
from tests.singer_plugins import TAP_JSONL, plugin



@pytest.fixture(scope="module")
def tap_jsonl() -> Path:
    return plugin("tap-jsonl", TAP_JSONL)


@pytest.fixture
def target_config(warehouse: Any, tmp_path: Path) -> Path:
    pg = warehouse.stack.postgres.airflow_connection(warehouse.dbname)
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS raw_runner CASCADE")
    path = tmp_path / "target.json"
    path.write_text(json.dumps({"host": pg["host"], "port": pg["port"], "user": pg["login"], "password": pg["password"],
                                "database": warehouse.dbname, "default_target_schema": "raw_runner"}))
    return path


def _target(config: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "osds-target-postgres"), "--config", str(config)]


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_a_real_tap_pipes_into_our_target_and_the_committed_state_comes_back(
    tap_jsonl: Path, target_config: Path, warehouse: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "events.jsonl").write_text("".join(json.dumps({"id": i, "kind": "open" if i % 2 else "click"}) + "\n"
                                               for i in range(2500)))
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(json.dumps({"path": str(data / "*.jsonl"), "stream_name": "events", "primary_keys": ["id"],
                                      "emit_state_every": 1000}))
    logs: list[tuple[str, str]] = []
    states: list[Any] = []
    run = run_pipe([str(tap_jsonl), "--config", str(tap_config)], _target(target_config),
                   on_log=lambda side, line: logs.append((side, line)), on_state=states.append, timeout=300)
    assert (run.tap_exit, run.target_exit) == (0, 0)
    with warehouse.stack.postgres.connect(warehouse.dbname) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM raw_runner.events").fetchone() == (2500, 2500)
    assert run.record_counts == {"events": 2500}  # from the target's METRIC lines
    assert states and run.state == states[-1] and "bookmarks" in run.state
    assert {side for side, _ in logs} == {"tap", "target"}


def test_a_tap_dying_mid_stream_fails_naming_it_and_keeps_the_committed_state(
    target_config: Path, warehouse: Any, tmp_path: Path
) -> None:
    tap = _script(tmp_path, "dying_tap.py", """
        import json, sys
        print(json.dumps({"type": "SCHEMA", "stream": "s", "schema": {"properties": {"id": {"type": "integer"}}},
                          "key_properties": ["id"]}))
        for i in range(5):
            print(json.dumps({"type": "RECORD", "stream": "s", "record": {"id": i}}))
        print(json.dumps({"type": "STATE", "value": {"bookmarks": {"s": {"id": 4}}}}))
        sys.stdout.flush()
        print("connection reset by source", file=sys.stderr)
        sys.exit(3)
    """)
    states: list[Any] = []
    with pytest.raises(SingerError) as info:
        run_pipe(tap, _target(target_config), on_state=states.append, timeout=120)
    message = str(info.value)
    assert message.startswith('the tap (exit 3) failed; the last committed state is kept: {"bookmarks": {"s": {"id": 4}}}')
    assert "connection reset by source" in message
    assert info.value.run.target_exit == 0 and states == [{"bookmarks": {"s": {"id": 4}}}]
    with warehouse.stack.postgres.connect(warehouse.dbname) as conn:
        assert conn.execute("SELECT count(*) FROM raw_runner.s").fetchone() == (5,)


def test_a_failing_target_is_named_and_secrets_are_masked(tmp_path: Path) -> None:
    tap = _script(tmp_path, "tap.py", """
        import json
        print(json.dumps({"type": "SCHEMA", "stream": "s", "schema": {"properties": {}}, "key_properties": []}))
    """)
    target = _script(tmp_path, "target.py", """
        import sys
        sys.stdin.read()
        print("could not connect with password hunter2-secret", file=sys.stderr)
        sys.exit(1)
    """)
    logs: list[str] = []
    with pytest.raises(SingerError) as info:
        run_pipe(tap, target, secrets=["hunter2-secret"], on_log=lambda side, line: logs.append(line), timeout=60)
    assert str(info.value).startswith("the target (exit 1) failed")
    assert "hunter2-secret" not in str(info.value) and "hunter2-secret" not in "".join(logs)
    assert "could not connect with password ***" in str(info.value)


def test_a_missing_executable_says_which_side(tmp_path: Path) -> None:
    with pytest.raises(SingerError, match="the tap could not start: .*no-such-tap"):
        run_pipe([str(tmp_path / "no-such-tap")], [sys.executable, "-c", "pass"])
    with pytest.raises(SingerError, match="the target could not start: .*no-such-target"):
        run_pipe([sys.executable, "-c", "pass"], [str(tmp_path / "no-such-target")])


def _slow_pair(tmp_path: Path) -> tuple[list[str], list[str], Path]:
    """A tap that sleeps and a target that waits for input, each writing its pid to the file ``$PIDS``."""
    tap = _script(tmp_path, "slow_tap.py", """
        import os, time
        open(os.environ["PIDS"], "a").write(f"{os.getpid()}\\n")
        time.sleep(120)
    """)
    target = _script(tmp_path, "slow_target.py", """
        import os, sys
        open(os.environ["PIDS"], "a").write(f"{os.getpid()}\\n")
        sys.stdin.read()
    """)
    return tap, target, tmp_path / "pids"


def test_a_timeout_stops_both_processes(tmp_path: Path) -> None:
    tap, target, pids = _slow_pair(tmp_path)
    with pytest.raises(SingerError, match="timed out after 2 s; both processes were stopped"):
        run_pipe(tap, target, env={**os.environ, "PIDS": str(pids)}, timeout=2)
    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_pip_spec_has_its_own_environment_and_a_changed_spec_another(
    tap_jsonl: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert tap_jsonl.parent.parent.name == env_name(TAP_JSONL)  # the same spec finds the same environment
    assert executable("tap-jsonl", pip_url=TAP_JSONL) == tap_jsonl
    assert env_name("tap-jsonl==0.3.1") != env_name("tap-jsonl==0.3.0") and env_name(TAP_JSONL).startswith("singer-tap-jsonl-")
    with pytest.raises(PluginError, match="installs no executable 'tap-nope'; it installs: .*tap-jsonl"):
        executable("tap-nope", pip_url=TAP_JSONL)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PluginError, match="no executable 'tap-jsonl' on PATH; give its path, or a pip_url"):
        executable("tap-jsonl")
    with pytest.raises(PluginError, match="an empty pip_url"):
        env_name("  ")


def test_a_spec_that_cannot_install_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSDS_VENV_CACHE", str(tmp_path))
    with pytest.raises(PluginError, match="installing 'no-such-tap-osds==0.0.0 --no-index' for tap-x failed"):
        executable("tap-x", pip_url="no-such-tap-osds==0.0.0 --no-index")


def test_both_processes_die_with_a_task_killed_hard(tmp_path: Path) -> None:
    """The task's process is SIGKILLed (as Airflow does when a task ignores SIGTERM): no finally runs,
    yet neither side outlives it."""
    import signal
    import subprocess
    import time

    tap, target, pids = _slow_pair(tmp_path)
    task = subprocess.Popen([sys.executable, "-c", (
        "import os, sys; from airflow_osds.singer.runner import run_pipe; "
        f"run_pipe({tap!r}, {target!r}, env={{**os.environ, 'PIDS': {str(pids)!r}}})")])
    deadline = time.monotonic() + 30
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    task.send_signal(signal.SIGKILL)
    task.wait(timeout=10)
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in children if _alive(pid)]
        time.sleep(0.05)
    assert alive == [], "a side outlived the task"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_target_that_dies_stops_a_tap_that_is_not_writing(tmp_path: Path) -> None:
    """The tap would only notice the dead target at its next write (here: in 60 s)."""
    import time

    tap = _script(tmp_path, "quiet_tap.py", "import time\ntime.sleep(60)\n")
    target = _script(tmp_path, "dead_target.py", "import sys\nprint('no database', file=sys.stderr)\nsys.exit(1)\n")
    started = time.monotonic()
    with pytest.raises(SingerError) as info:
        run_pipe(tap, target, timeout=120)
    assert time.monotonic() - started < 10
    assert str(info.value).startswith("the target (exit 1) failed (the tap was stopped: nothing read its output)")
    assert "no database" in str(info.value)
