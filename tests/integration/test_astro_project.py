"""astro-project/ stays in step with the repository: the image's build steps (the Dockerfile's `osds …`
lines) run on the repository's dags/ and include/ as `make astro-project` copies them, and leave the
dbt manifests and the compiled parse cache the DAG files need; every connection the pipelines use is
defined in airflow_settings.yaml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from airflow_osds.assets import DataRef
from airflow_osds.factory.compile import compile_project
from airflow_osds.factory.project import load_project

REPO_ROOT = Path(__file__).resolve().parents[2]
ASTRO = REPO_ROOT / "astro-project"
IMAGE_HOME = "/usr/local/airflow"  # where the Astro runtime image holds the project


def _dockerfile() -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's ENV settings and its RUN lines that call osds (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", (ASTRO / "Dockerfile").read_text())
    env = dict(re.findall(r"^ENV (\w+)=(\S+)$", text, re.M))
    runs = [line for line in re.findall(r"^RUN (.+)$", text, re.M) if "osds " in line]
    return env, runs


def test_the_images_osds_build_steps_work_on_the_repositorys_pipelines(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    # What `make astro-project` copies (a fresh clone has no dbt target/).
    shutil.copytree(REPO_ROOT / "dags", home / "dags")
    shutil.copytree(REPO_ROOT / "include", home / "include", ignore=shutil.ignore_patterns("target", "logs", ".osds_cache"))
    env_lines, runs = _dockerfile()
    assert any("osds singer install" in r for r in runs) and any("osds compile" in r for r in runs), runs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OSDS_CACHE"))}
    env |= {k: v.replace(IMAGE_HOME, str(home)) for k, v in env_lines.items() if k != "OSDS_VENV_CACHE"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # osds of this environment
    for run in runs:  # the component virtualenvs come from this machine's cache, as the tests' do
        done = subprocess.run(["bash", "-c", run.replace(IMAGE_HOME, str(home))], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"RUN {run}\n{done.stdout}\n{done.stderr}"
    cache = Path(env["OSDS_CACHE_DIR"])
    assert list(cache.glob("*.osdsc")), "the pipelines are compiled into the image's parse cache"
    for project in (REPO_ROOT / "include" / "dbt").iterdir():
        if (project / "dbt_project.yml").exists():
            assert (home / "include" / "dbt" / project.name / "target" / "manifest.json").exists(), project.name


def _connections(value: Any) -> set[str]:
    """Connection ids named in a compiled task's settings."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("connection", "warehouse_conn_id", "superset_conn_id", "conn_id") and isinstance(item, str):
                found.add(item)
            found |= _connections(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= _connections(item)
    return found


def test_every_connection_the_pipelines_use_is_in_airflow_settings(repo_dbt_manifests: None) -> None:
    compiled = compile_project(load_project(REPO_ROOT / "include" / "pipelines"))
    assert not compiled.errors, compiled.errors
    used: set[str] = set()
    plans = load_project(REPO_ROOT / "include" / "pipelines").plans
    for plan in plans.values():
        for step in plan.tasks():
            used |= {ref.conn_id for ref in (*step.reads, *step.writes) if isinstance(ref, DataRef) and ref.conn_id}
    for pipeline in compiled.pipelines.values():
        stack = list(pipeline.nodes)
        while stack:
            node = stack.pop()
            stack.extend(getattr(node, "children", ()))
            used |= _connections(getattr(node, "kwargs", {}))
    settings = yaml.safe_load((ASTRO / "airflow_settings.yaml").read_text())
    defined = {c["conn_id"] for c in settings["airflow"]["connections"]}
    assert {"warehouse", "crm_source", "superset"} <= used, used
    assert used <= defined, f"airflow_settings.yaml lacks {sorted(used - defined)}"
