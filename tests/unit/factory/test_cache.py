"""The compiled cache: shared by processes, recompiled by any change it depends on, and only by those."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_osds import factory
from airflow_osds.dbt.fingerprint import project_fingerprint, write_fingerprint
from airflow_osds.factory import cache as cache_module
from airflow_osds.factory.cache import CompiledCache

DBT_FIXTURE = Path(__file__).resolve().parents[1] / "dbt" / "data"
WAREHOUSE = "warehouse"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("OSDS_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def pipelines(tmp_path: Path, cache_dir: Path) -> Path:
    """A folder using every kind of input the key covers: defaults, an outside SQL file, an env var, dbt."""
    folder = tmp_path / "pipelines"
    (folder / "sub").mkdir(parents=True)
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "orders.sql").write_text("INSERT INTO marts.orders SELECT * FROM raw.orders")
    (folder / "sub" / "defaults.yml").write_text("defaults: {retries: 1}\n")
    (folder / "sub" / "orders.yml").write_text(textwrap.dedent("""\
        pipeline: orders
        description: "${OSDS_TEST_DESCRIPTION:-none}"
        steps:
          build: {sql: {file: ../../sql/orders.sql}}
    """))
    project = tmp_path / "dbt" / "shop"
    shutil.copytree(DBT_FIXTURE / "project", project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "target").mkdir()
    shutil.copy(DBT_FIXTURE / "manifest.json", project / "target" / "manifest.json")
    write_fingerprint(project / "target", project_fingerprint(project), target_schema="public")
    (folder / "shop.yml").write_text("pipeline: shop\nsteps:\n  transform:\n    dbt: {project: ../dbt/shop}\n")
    return folder


def _warm(folder: Path) -> CompiledCache:
    compiled = factory.compile_folder(folder, default_warehouse=WAREHOUSE)
    assert compiled.path is not None and not compiled.errors, compiled.errors
    assert CompiledCache.read(folder, WAREHOUSE) is not None, "a fresh cache is current"
    return compiled


def _edit(path: Path, text: str) -> None:
    """Rewrite ``path`` with a new size and a later mtime (as any editor does)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_nothing_changed_the_cache_is_read(pipelines: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(pipelines)
    monkeypatch.setenv("SOME_UNRELATED_VARIABLE", "x")  # not referenced by any file: no recompile
    cached = CompiledCache.read(pipelines, WAREHOUSE)
    assert cached is not None and sorted(cached.pipeline_ids) == ["orders", "shop"]


@pytest.mark.parametrize(
    "change",
    [
        "pipeline file", "new pipeline file", "removed pipeline file", "defaults.yml", "included SQL file",
        "dbt manifest", "dbt model", "referenced env var", "airflow-osds version", "default warehouse",
    ],
)
def test_any_input_change_recompiles(pipelines: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    _warm(pipelines)
    root = pipelines.parent
    warehouse = WAREHOUSE
    if change == "pipeline file":
        _edit(pipelines / "sub" / "orders.yml", (pipelines / "sub" / "orders.yml").read_text() + "tags: [x]\n")
    elif change == "new pipeline file":
        (pipelines / "new.yml").write_text("pipeline: new\nsteps:\n  a: {sql: SELECT 1}\n")
    elif change == "removed pipeline file":
        (pipelines / "shop.yml").unlink()
    elif change == "defaults.yml":
        _edit(pipelines / "sub" / "defaults.yml", "defaults: {retries: 3}\n")
    elif change == "included SQL file":
        _edit(root / "sql" / "orders.sql", "INSERT INTO marts.orders2 SELECT * FROM raw.orders")
    elif change == "dbt manifest":
        manifest = root / "dbt" / "shop" / "target" / "manifest.json"
        _edit(manifest, manifest.read_text() + "\n")
    elif change == "dbt model":  # the manifest is now stale: the cache must not hide it
        model = next((root / "dbt" / "shop" / "models" / "staging").glob("*.sql"))
        _edit(model, model.read_text() + "\n-- edited\n")
    elif change == "referenced env var":
        monkeypatch.setenv("OSDS_TEST_DESCRIPTION", "from the environment")
    elif change == "airflow-osds version":
        monkeypatch.setattr("airflow_osds.__version__", "99.0.0")
        monkeypatch.setattr(cache_module, "_VERSIONS", None)
    elif change == "default warehouse":
        warehouse = "other_warehouse"
    assert CompiledCache.read(pipelines, warehouse) is None


def test_recompiled_result_follows_the_change(pipelines: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(pipelines)
    monkeypatch.setenv("OSDS_TEST_DESCRIPTION", "from the environment")
    dags = factory.load_pipelines(pipelines)
    assert dags["orders"].description == "from the environment"
    model = next((pipelines.parent / "dbt" / "shop" / "models" / "staging").glob("*.sql"))
    _edit(model, model.read_text() + "\n-- edited\n")
    assert "shop" not in factory.load_pipelines(pipelines)
    error = next(e for e in factory._compiled(pipelines).errors if e.path.endswith("shop.yml"))
    assert "older than the project's files" in str(error)


def test_steady_state_reads_the_cache_and_plans_nothing(pipelines: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(pipelines)
    import airflow_osds.factory.project as project_module

    def no_planning(*args: object, **kwargs: object) -> None:
        raise AssertionError("the folder was read and planned again")

    monkeypatch.setattr(project_module, "load_project", no_planning)
    assert sorted(factory.load_pipelines(pipelines)) == ["orders", "shop"]
    factory.report_pipeline_errors(pipelines)


def test_a_steady_state_parse_imports_no_yaml_model_or_planner(pipelines: Path) -> None:
    _warm(pipelines)
    script = textwrap.dedent(f"""
        import sys
        import airflow.sdk
        from airflow_osds.factory import load_pipelines, report_pipeline_errors
        dags = load_pipelines({str(pipelines)!r})
        report_pipeline_errors({str(pipelines)!r})
        heavy = ["airflow_osds.factory.spec", "airflow_osds.factory.loader", "airflow_osds.factory.plan",
                 "airflow_osds.factory.project", "airflow_osds.factory.compile", "airflow_osds.factory.blocks",
                 "airflow_osds.sql", "sqlglot"]
        print(sorted(dags), [m for m in heavy if m in sys.modules])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['orders', 'shop'] []"


def test_a_task_start_reads_and_builds_only_its_pipeline(pipelines: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(pipelines)
    from airflow_osds.factory import build as build_module

    built: list[str] = []
    real_build = build_module.build_dag
    monkeypatch.setattr(build_module, "build_dag", lambda p, **kw: built.append(p.dag_id) or real_build(p, **kw))
    read_all = CompiledCache.pipelines
    monkeypatch.setattr(CompiledCache, "pipelines", lambda self: pytest.fail("every pipeline was read") or read_all(self))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orders")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "build")
    namespace: dict[str, object] = {}
    assert list(factory.load_pipelines(pipelines, namespace)) == ["orders"]
    assert built == ["orders"] and list(namespace) == ["orders"]


def test_parsers_writing_at_once_leave_one_valid_file(pipelines: Path, cache_dir: Path) -> None:
    script = f"from airflow_osds.factory import compile_folder; compile_folder(__import__('pathlib').Path({str(pipelines)!r}), default_warehouse={WAREHOUSE!r})"
    procs = [subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy()) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert [p.name for p in cache_dir.iterdir()] == [next(cache_dir.glob("*.osdsc")).name], "no temporary file left"
    cached = CompiledCache.read(pipelines, WAREHOUSE)
    assert cached is not None and sorted(cached.pipelines()) == ["orders", "shop"]


def test_a_read_only_bundle_falls_back_to_airflow_home(pipelines: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OSDS_CACHE_DIR")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    # The folder's own cache location cannot be created (tests run as root, so a chmod would
    # not stop a write: a file in the way is a real failure root cannot bypass).
    (pipelines / ".osds_cache").write_text("in the way")
    compiled = factory.compile_folder(pipelines, default_warehouse=WAREHOUSE)
    assert compiled.path is not None and compiled.path.parent == tmp_path / "airflow-home" / "osds_cache"
    assert CompiledCache.read(pipelines, WAREHOUSE) is not None
    assert sorted(factory.load_pipelines(pipelines)) == ["orders", "shop"]


def test_no_writable_location_still_loads_and_says_so(
    pipelines: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("OSDS_CACHE_DIR", str(blocker / "cache"))
    assert sorted(factory.load_pipelines(pipelines)) == ["orders", "shop"]
    assert "no writable folder" in caplog.text and "OSDS_CACHE_DIR" in caplog.text


def test_cache_files_are_private(pipelines: Path, cache_dir: Path) -> None:
    compiled = _warm(pipelines)
    assert compiled.path is not None
    assert compiled.path.stat().st_mode & 0o077 == 0
    assert cache_dir.stat().st_mode & 0o077 == 0


def test_the_key_holds_digests_of_environment_values(pipelines: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSDS_TEST_DESCRIPTION", "s3cr3t-value-in-env")
    _warm(pipelines)
    cached = CompiledCache.read(pipelines, WAREHOUSE)
    assert cached is not None
    ((name, digest),) = cached.header.key.env
    assert name == "OSDS_TEST_DESCRIPTION" and digest is not None and "s3cr3t" not in digest and len(digest) == 32
