"""The repository's dags/ folder parses into one DAG per pipeline file, with no import errors."""

from __future__ import annotations

from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

from airflow_osds.factory.loader import find_pipeline_files, parse_pipeline_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_dags_folder_imports_every_pipeline() -> None:
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    expected = {parse_pipeline_file(p).pipeline for p in find_pipeline_files(REPO_ROOT / "include" / "pipelines")}
    assert expected, "the demo has pipelines"
    assert set(bag.dags) == expected
    for dag in bag.dags.values():
        assert "osds" in dag.tags


def test_broken_pipeline_is_an_import_error_naming_file_and_line(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "broken.yml").write_text("pipeline: broken\nsteps:\n  a:\n    sqll: SELECT 1\n")
    dag_file = tmp_path / "loader.py"
    dag_file.write_text(f"# airflow dag loader\nfrom airflow_osds.factory import load_pipelines\nload_pipelines({str(pipelines)!r}, globals())\n")
    bag = DagBag(dag_folder=str(dag_file))
    (error,) = bag.import_errors.values()
    assert f"{pipelines / 'broken.yml'}:4:5: unknown key `sqll`: did you mean `sql`?" in error
