"""Component virtualenvs: built once in the cache, reused while the requirements match, never replacing a stranger."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_osds.venvs import MARKER, VenvError, cache_dir, ensure_venv


def test_the_cache_is_configurable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSDS_VENV_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("OSDS_VENV_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "airflow-osds" / "venvs"


def test_built_once_then_reused_and_rebuilt_when_the_requirements_change(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSDS_VENV_CACHE", str(tmp_path))
    root = ensure_venv("empty", (), check=["-c", "import sys; assert sys.prefix != sys.base_prefix"])
    assert root == tmp_path / "empty" and (root / "bin" / "python").exists()
    stamp = (root / MARKER).stat().st_mtime_ns
    assert ensure_venv("empty", ()) == root and (root / MARKER).stat().st_mtime_ns == stamp, "reused"
    with pytest.raises(VenvError, match="no-such-package-osds"):
        ensure_venv("empty", ("no-such-package-osds==0.0.0",), pip_args=["--no-index"])


def test_a_directory_that_is_not_a_virtualenv_is_never_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OSDS_VENV_CACHE", str(tmp_path))
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("keep me")
    with pytest.raises(VenvError, match="is not a virtualenv"):
        ensure_venv("precious", ())
    assert (tmp_path / "precious" / "thesis.txt").read_text() == "keep me"


def test_two_processes_wanting_the_same_virtualenv_build_it_once(tmp_path: Path) -> None:
    """Two real processes at once (two tasks on a worker): one builds under the lock, the other reuses it."""
    import os
    import subprocess
    import sys

    builds = tmp_path / "builds.txt"
    code = (
        "import sys; from airflow_osds.venvs import ensure_venv; "
        f"print(ensure_venv('shared', (), check=['-c', \"open({str(builds)!r}, 'a').write('built\\\\n')\"]))"
    )
    env = {**os.environ, "OSDS_VENV_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {str(tmp_path / "cache" / "shared")}
    assert builds.read_text() == "built\n", "built exactly once"
