"""Pipeline files → specs, and every kind of mistake reported with file:line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_osds.exceptions import PipelineSpecError
from airflow_osds.factory.loader import find_pipeline_files, parse_pipeline_file

VALID = """\
pipeline: orders
schedule: "@daily"
defaults: {warehouse: dwh, retries: 2}
steps:
  load:
    sql: INSERT INTO raw.orders SELECT 1
    writes: [raw.orders]
  aggregate:
    sql:
      file: sql/agg.sql
    reads: [raw.orders]
    after: [load]
"""


def _write(tmp_path: Path, text: str, name: str = "p.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(PipelineSpecError) as info:
        parse_pipeline_file(path)
    assert info.value.path == str(path)
    return [p.render(path.name) for p in info.value.problems]


def test_valid_file(tmp_path: Path) -> None:
    spec = parse_pipeline_file(_write(tmp_path, VALID)).spec
    assert spec.pipeline == "orders"
    assert spec.defaults.warehouse == "dwh" and spec.defaults.retries == 2
    assert spec.steps["load"].sql.query == "INSERT INTO raw.orders SELECT 1"  # string shorthand
    assert spec.steps["aggregate"].sql.file == "sql/agg.sql"
    assert spec.steps["aggregate"].after == ["load"]


def test_unknown_key_has_position_and_did_you_mean(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("    writes: [raw.orders]", "    writs: [raw.orders]"))
    assert _problems(path) == ["p.yml:7:5: unknown key `writs`: did you mean `writes`? (steps.load.writs)"]


def test_unknown_top_level_key_lists_allowed_keys_when_nothing_is_close(tmp_path: Path) -> None:
    path = _write(tmp_path, "zzz: 1\n" + VALID)
    (problem,) = _problems(path)
    assert problem.startswith("p.yml:1:1: unknown key `zzz`: allowed keys: callbacks, catchup, dagrun_timeout, defaults,")


def test_unknown_key_in_nested_block(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("      file: sql/agg.sql", "      fille: sql/agg.sql"))
    problems = _problems(path)
    assert "p.yml:10:7: unknown key `fille`: did you mean `file`? (steps.aggregate.sql.fille)" in problems


def test_missing_required_key(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("pipeline: orders\n", ""))
    assert _problems(path) == ["p.yml:1:1: missing required key `pipeline` (pipeline)"]


def test_wrong_type_points_at_the_value(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("retries: 2", "retries: many"))
    (problem,) = _problems(path)
    assert problem.startswith("p.yml:3:37: ")
    assert "integer" in problem and "(defaults.retries)" in problem


def test_sql_needs_exactly_one_source(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("      file: sql/agg.sql", "      file: sql/agg.sql\n      query: SELECT 1"))
    assert _problems(path) == ["p.yml:10:7: give exactly one of `query` or `file` (steps.aggregate.sql)"]


def test_bad_ids(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("pipeline: orders", "pipeline: 9orders").replace("  load:", "  lo-ad:").replace("after: [load]", "after: []"))
    problems = _problems(path)
    assert any(p.startswith("p.yml:1:11:") and "(pipeline)" in p for p in problems)
    assert any("step id 'lo-ad' must start with a letter" in p for p in problems)


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "pipeline: x\nsteps:\n  a: [unclosed\n")
    (problem,) = _problems(path)
    assert problem.startswith("p.yml:4:1: YAML syntax error:")


def test_file_must_be_a_mapping(tmp_path: Path) -> None:
    assert _problems(_write(tmp_path, "- a\n- b\n")) == [
        "p.yml:1:1: a pipeline file must be a mapping that starts with `pipeline: <id>`"
    ]


def test_empty_steps_is_an_error(tmp_path: Path) -> None:
    (problem,) = _problems(_write(tmp_path, "pipeline: x\nsteps: {}\n"))
    assert problem.startswith("p.yml:2:8:") and "at least 1 item" in problem


def test_find_pipeline_files_skips_hidden_and_other_files(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "sub/c.yml", ".hidden/d.yml", "sql/x.sql", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in find_pipeline_files(tmp_path)] == ["a.yaml", "b.yml", "sub/c.yml"]
