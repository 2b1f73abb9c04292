"""The repository's dags/ folder parses into one DAG per pipeline file, with no import errors."""

from __future__ import annotations

from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

from airflow_osds.factory.loader import find_pipeline_files, parse_pipeline_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_dags_folder_imports_every_pipeline(repo_dbt_manifests: None) -> None:
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    expected = {parse_pipeline_file(p).spec.pipeline for p in find_pipeline_files(REPO_ROOT / "include" / "pipelines")}
    assert expected, "the demo has pipelines"
    assert set(bag.dags) == expected
    for dag in bag.dags.values():
        assert "osds" in dag.tags


def test_broken_pipeline_is_an_import_error_and_hides_no_healthy_pipeline(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "broken.yml").write_text("pipeline: broken\nsteps:\n  a:\n    sqll: SELECT 1\n")
    (pipelines / "healthy.yml").write_text("pipeline: healthy\nsteps:\n  a:\n    sql: SELECT 1\n")
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in ("osds_pipelines.py", "osds_pipeline_errors.py"):
        text = (REPO_ROOT / "dags" / name).read_text()
        (dags / name).write_text(text.replace('Path(__file__).resolve().parent.parent / "include" / "pipelines"', repr(str(pipelines))))
    bag = DagBag(dag_folder=str(dags))
    assert set(bag.dags) == {"healthy"}
    assert list(bag.import_errors) == [str(dags / "osds_pipeline_errors.py")]
    error = bag.import_errors[str(dags / "osds_pipeline_errors.py")]
    assert f"{pipelines / 'broken.yml'}:4:5: unknown key `sqll`: did you mean `sql`?" in error
