"""`osds validate` and `osds version` as a user runs them (the installed console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from airflow_osds import __version__

OSDS = str(Path(sys.executable).parent / "osds")
REPO_PIPELINES = Path(__file__).resolve().parents[2] / "include" / "pipelines"


def _osds(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OSDS, *args], capture_output=True, text=True, timeout=120)


def test_version() -> None:
    result = _osds("version")
    assert (result.returncode, result.stdout.strip()) == (0, __version__)


def test_validate_accepts_the_demo_pipelines() -> None:
    result = _osds("validate", str(REPO_PIPELINES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 invalid" in result.stdout


def test_validate_reports_each_problem_and_fails(tmp_path: Path) -> None:
    (tmp_path / "good.yml").write_text("pipeline: good\nsteps:\n  a:\n    sql: SELECT 1\n")
    (tmp_path / "bad.yml").write_text("pipeline: bad\nsteps:\n  a:\n    sql: SELECT 1\n    aftr: []\n")
    result = _osds("validate", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path / 'bad.yml'}:5:5: unknown key `aftr`: did you mean `after`?" in result.stdout
    assert "2 file(s) checked, 1 invalid" in result.stdout

    as_json = json.loads(_osds("validate", "--format", "json", str(tmp_path)).stdout)
    assert as_json["files"] == 2
    assert as_json["errors"] == [
        {"file": str(tmp_path / "bad.yml"), "line": 5, "column": 5, "location": "steps.a.aftr",
         "message": "unknown key `aftr`: did you mean `after`?"}
    ]


def test_validate_without_files_fails(tmp_path: Path) -> None:
    assert _osds("validate", str(tmp_path)).returncode == 1
