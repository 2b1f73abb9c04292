"""One broken pipeline never hides another, whatever the failure.

A table of failure kinds, each run against a real ``DagBag`` of the shipped DAG files
(``dags/osds_pipelines.py`` + ``dags/osds_pipeline_errors.py``, pointed at a temporary
pipelines folder) and against ``osds validate``. Each row asserts the healthy DAG ids, the
exact located error in the import error, and the same error from ``validate``.

The DagBag is filled twice, as Airflow's DAG processor re-parses every file: a failure
that only *building* a DAG reveals is recorded by the file that builds it and reported by
the error file on its next parse (immediately after ``osds compile``, see the last test).
"""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from airflow_osds.cli import main as osds
from airflow_osds.dbt.fingerprint import project_fingerprint, write_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_FIXTURE = REPO_ROOT / "tests" / "unit" / "dbt" / "data"

HEALTHY = {
    "healthy_sql.yml": "pipeline: healthy_sql\nsteps:\n  load: {sql: CREATE TABLE IF NOT EXISTS raw.t AS SELECT 1 AS x}\n",
    "healthy_ops.yml": textwrap.dedent("""\
        pipeline: healthy_ops
        steps:
          start: {operator: {class: airflow.providers.standard.operators.empty.EmptyOperator}}
          work:
            after: [start]
            group:
              steps:
                one: {operator: {class: airflow.providers.standard.operators.bash.BashOperator, kwargs: {bash_command: "true"}}}
    """),
}
DBT_STEP = "pipeline: broken\nsteps:\n  transform:\n    dbt: {project: ../dbt/shop}\n"


def _dbt_project(pipelines: Path, *, manifest: str | None = "real", stale: bool = False) -> None:
    project = pipelines.parent / "dbt" / "shop"
    shutil.copytree(DBT_FIXTURE / "project", project, ignore=shutil.ignore_patterns("target", "logs"))
    if manifest is None:
        return
    (project / "target").mkdir()
    if manifest == "real":
        shutil.copy(DBT_FIXTURE / "manifest.json", project / "target" / "manifest.json")
    else:
        (project / "target" / "manifest.json").write_text(manifest)
    write_fingerprint(project / "target", project_fingerprint(project), target_schema="public")
    if stale:  # a model edited after `osds dbt-parse`
        model = next((project / "models" / "staging").glob("*.sql"))
        model.write_text(model.read_text() + "\n-- edited\n")


def _module(name: str, source: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root.parent / "mods" / f"{name}.py").write_text(source)

    return setup


# (id, broken.yml content, setup of other files, expected "<line>:<col>: message (location)" after "broken.yml:")
ROWS: list[tuple[str, bytes | str, Callable[[Path], None] | None, str]] = [
    ("latin-1", "pipeline: broken\ndescription: café\nsteps:\n  a: {sql: SELECT 1}\n".encode("latin-1"), None,
     "2:17: not UTF-8 text: byte 0xe9 cannot be decoded; save the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)"),
    ("yaml-syntax", "pipeline: broken\nsteps:\n  a: {sql: SELECT 1\n", None,
     "4:1: YAML syntax error: did not find expected ',' or '}'"),
    ("duplicate-key", "pipeline: broken\nschedule: '@daily'\nschedule: '@hourly'\nsteps:\n  a: {sql: SELECT 1}\n", None,
     "3:1: duplicate key `schedule` (first given on line 2): keep one, YAML would silently use the last"),
    ("duplicate-step", "pipeline: broken\nsteps:\n  a: {sql: SELECT 1}\n  a: {sql: SELECT 2}\n", None,
     "4:3: duplicate key `a` (first given on line 3): keep one, YAML would silently use the last"),
    ("schema", "pipeline: broken\nsteps:\n  a:\n    sqll: SELECT 1\n", None,
     "4:5: unknown key `sqll`: did you mean `sql`? (steps.a.sqll)"),
    ("module-syntax-error", "pipeline: broken\nsteps:\n  a: {python: {callable: osds_iso_syntax.f}}\n",
     _module("osds_iso_syntax", "def f(:\n    pass\n"),
     "3:26: cannot import module `osds_iso_syntax` (from `osds_iso_syntax.f`): SyntaxError: invalid syntax "
     "({mods}/osds_iso_syntax.py:1) (steps.a.python.callable)"),
    ("module-name-error", "pipeline: broken\nsteps:\n  a: {python: {callable: osds_iso_name.f}}\n",
     _module("osds_iso_name", "x = undefined_name\n"),
     "3:26: cannot import module `osds_iso_name` (from `osds_iso_name.f`): NameError: name 'undefined_name' is not "
     "defined ({mods}/osds_iso_name.py:1) (steps.a.python.callable)"),
    ("module-import-error", "pipeline: broken\nsteps:\n  a: {python: {callable: osds_iso_import.f}}\n",
     _module("osds_iso_import", "import osds_no_such_module\n"),
     "3:26: cannot import module `osds_iso_import` (from `osds_iso_import.f`): ModuleNotFoundError: No module named "
     "'osds_no_such_module' ({mods}/osds_iso_import.py:1) (steps.a.python.callable)"),
    ("not-callable", "pipeline: broken\nsteps:\n  a: {python: {callable: os.sep}}\n", None,
     "3:26: `os.sep` is a str, not a function: name a callable (steps.a.python.callable)"),
    ("dbt-manifest-missing", DBT_STEP, lambda root: _dbt_project(root, manifest=None),
     "4:20: cannot read {dbt}/target/manifest.json: no dbt manifest; run `osds dbt-parse {dbt}` "
     "(steps.transform.dbt.project)"),
    ("dbt-manifest-corrupt", DBT_STEP, lambda root: _dbt_project(root, manifest="{not json"),
     "4:20: {dbt}/target/manifest.json: cannot read manifest: JSON is malformed: object keys must be strings "
     "(byte 1); run `osds dbt-parse {dbt}` (steps.transform.dbt.project)"),
    ("dbt-manifest-stale", DBT_STEP, lambda root: _dbt_project(root, stale=True),
     "4:20: the dbt manifest {dbt}/target/manifest.json is older than the project's files; run "
     "`osds dbt-parse {dbt}` (steps.transform.dbt.project)"),
    ("sql-file-missing", "pipeline: broken\nsteps:\n  a: {sql: {file: sql/missing.sql}}\n", None,
     "3:19: cannot read {root}/sql/missing.sql: No such file or directory (steps.a.sql.file)"),
    ("sql-file-latin-1", "pipeline: broken\nsteps:\n  a: {sql: {file: sql/latin1.sql}}\n",
     lambda root: (root / "sql").mkdir() or (root / "sql" / "latin1.sql").write_bytes("SELECT 'é'".encode("latin-1")),
     "3:19: {root}/sql/latin1.sql is not UTF-8 text (byte 0xe9); save it as UTF-8 (steps.a.sql.file)"),
    ("operator-argument", "pipeline: broken\nsteps:\n  a:\n    operator:\n      class: "
     "airflow.providers.standard.operators.bash.BashOperator\n      kwargs: {bash_commandd: echo}\n", None,
     "6:16: BashOperator takes no argument `bash_commandd`: did you mean `bash_command`? (steps.a.operator.kwargs.bash_commandd)"),
    ("constructor-raises", "pipeline: broken\nsteps:\n  a:\n    operator:\n      class: "
     "airflow.providers.standard.operators.empty.EmptyOperator\n      kwargs: {pool_slots: 0}\n", None,
     "3:3: building the task failed: ValueError: pool slots for a in dag broken cannot be less than 1 (steps.a)"),
]


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The shipped DAG files, pointed at an empty pipelines folder holding the healthy pipelines."""
    pipelines, dags, mods = tmp_path / "pipelines", tmp_path / "dags", tmp_path / "mods"
    for folder in (pipelines, dags, mods):
        folder.mkdir()
    for name, text in HEALTHY.items():
        (pipelines / name).write_text(text)
    for name in ("osds_pipelines.py", "osds_pipeline_errors.py"):
        text = (REPO_ROOT / "dags" / name).read_text()
        shipped = 'Path(__file__).resolve().parent.parent / "include" / "pipelines"'
        assert shipped in text
        (dags / name).write_text(text.replace(shipped, repr(str(pipelines))))
    monkeypatch.syspath_prepend(str(mods))
    return pipelines, dags


def _parse(dags: Path) -> DagBag:
    return DagBag(dag_folder=str(dags))


@pytest.mark.parametrize(("content", "setup", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_a_broken_pipeline_hides_no_other(
    deployment: tuple[Path, Path], content: bytes | str, setup: Callable[[Path], None] | None, expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipelines, dags = deployment
    broken = pipelines / "broken.yml"
    (broken.write_bytes if isinstance(content, bytes) else broken.write_text)(content)  # type: ignore[operator]
    if setup is not None:
        setup(pipelines)
    places = {"{root}": pipelines, "{mods}": pipelines.parent / "mods", "{dbt}": pipelines.parent / "dbt" / "shop"}
    line = f"{broken}:{expected}"
    for placeholder, path in places.items():
        line = line.replace(placeholder, str(path))

    first = _parse(dags)
    assert set(first.dags) == {"healthy_sql", "healthy_ops"}
    assert set(first.import_errors) <= {str(dags / "osds_pipeline_errors.py")}
    bag = _parse(dags)  # the DAG processor's next parse
    assert set(bag.dags) == {"healthy_sql", "healthy_ops"}
    assert list(bag.import_errors) == [str(dags / "osds_pipeline_errors.py")]
    error = bag.import_errors[str(dags / "osds_pipeline_errors.py")]
    problems = error.split(f"1 invalid pipeline file in {pipelines}:\n", 1)[-1].splitlines()
    assert problems[0] == line, error

    capsys.readouterr()
    assert osds(["validate", str(pipelines)]) == 1
    out = capsys.readouterr().out.splitlines()
    where, message = line.split(": ", 1)
    assert f"{where}: error: {message}" in out, out
    assert out[-1] == "3 file(s) checked: 2 valid pipeline(s), 1 error(s), 0 warning(s)"


def test_a_block_failing_unexpectedly_is_its_files_error(
    deployment: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection (no real block fails on demand): the sql block's data derivation raises.
    from airflow_osds.factory import blocks

    real = blocks.BLOCKS["sql"]

    def boom(block: object, ctx: object) -> object:
        if "boom" in str(getattr(block, "query", "")):
            raise RuntimeError("boom")
        return real.data(block, ctx)  # type: ignore[arg-type]

    monkeypatch.setitem(blocks.BLOCKS, "sql", dataclasses.replace(real, data=boom))  # type: ignore[index]
    pipelines, dags = deployment
    (pipelines / "broken.yml").write_text("pipeline: broken\nsteps:\n  a: {sql: SELECT 'boom'}\n")
    bag = _parse(dags)
    assert set(bag.dags) == {"healthy_sql", "healthy_ops"}
    assert f"{pipelines / 'broken.yml'}:3:12: RuntimeError: boom (steps.a.sql)" in bag.import_errors[str(dags / "osds_pipeline_errors.py")]


def test_build_failures_are_reported_at_once_after_osds_compile(deployment: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    pipelines, dags = deployment
    (pipelines / "broken.yml").write_text(ROWS[-1][1])  # type: ignore[arg-type]
    assert osds(["compile", str(pipelines)]) == 1
    assert f"{pipelines / 'broken.yml'}:3:3: error: building the task failed" in capsys.readouterr().out
    bag = _parse(dags)  # first parse after the deployment step
    assert set(bag.dags) == {"healthy_sql", "healthy_ops"}
    assert "building the task failed: ValueError: pool slots" in bag.import_errors[str(dags / "osds_pipeline_errors.py")]
