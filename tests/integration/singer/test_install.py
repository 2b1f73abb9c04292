"""``osds singer install``: the virtualenvs of every tap and target the pipelines name, built before any
task needs them (what a Docker image build runs), with a failure per plugin named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_osds.singer.plugins import env_name
from tests.singer_plugins import TAP_JSONL, plugin

OSDS = str(Path(sys.executable).parent / "osds")

PIPELINE = """\
pipeline: {name}
steps:
  extract:
    singer:
      tap: {{executable: {executable}, pip_url: "{pip_url}", config: {{path: /nowhere}}}}
      streams: [contacts]
"""


@pytest.fixture(scope="module")
def tap_jsonl() -> Path:
    return plugin("tap-jsonl", TAP_JSONL)


def _install(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OSDS, "singer", "install", str(folder)], capture_output=True, text=True, timeout=600)


def test_install_builds_each_spec_once_and_names_the_steps_using_it(tap_jsonl: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yml").write_text(PIPELINE.format(name=name, executable="tap-jsonl", pip_url=TAP_JSONL))
    done = _install(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok      tap-jsonl from {TAP_JSONL!r}: {tap_jsonl} (used by a.extract, b.extract)" in done.stdout
    assert done.stdout.rstrip().endswith("1 plugin(s), 0 failed")
    assert env_name(TAP_JSONL) in str(tap_jsonl)


def test_a_spec_without_the_named_executable_fails_the_install_naming_it(tap_jsonl: Path, tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(PIPELINE.format(name="a", executable="tap-jsnol", pip_url=TAP_JSONL))
    done = _install(tmp_path)
    assert done.returncode == 1
    assert f"FAILED  tap-jsnol from {TAP_JSONL!r}: {TAP_JSONL!r} installs no executable 'tap-jsnol'; it installs: " in done.stderr
    assert "tap-jsonl" in done.stderr.split("it installs: ", 1)[1]
