"""read_yaml builds the same data as PyYAML's safe loader, on its fast path and off it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airflow_osds.exceptions import PipelineSpecError
from airflow_osds.factory import yaml_source
from airflow_osds.factory.yaml_source import read_yaml

PLAIN = """\
pipeline: p
start_date: 2026-01-01
when: 2026-01-01 10:30:00
flags: [yes, no, on, off, true, ~, null]
numbers: [1, -2, 0x1f, 1_000, 3.5, .inf, -.inf, 1e3]
strings: ['1', "two", three, '', "a: b"]
shared: &common {retries: 2, tags: [a, b]}
again: *common
nested: {a: {b: {c: [1, {d: e}]}}}
1: int key
empty:
"""

UNUSUAL = {
    "merge key": "base: &b {x: 1}\nchild:\n  <<: *b\n  y: 2\n",
    "set": "s: !!set {a, b}\n",
    "omap": "o: !!omap [{a: 1}, {b: 2}]\n",
    "binary": "b: !!binary aGVsbG8=\n",
    "explicit str": "n: !!str 12\n",
}


def _read(tmp_path: Path, text: str) -> object:
    path = tmp_path / "p.yml"
    path.write_text(text)
    return read_yaml(path)[1]


def test_plain_documents_take_the_fast_path_and_equal_pyyaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_full_constructor(*args: object, **kwargs: object) -> object:
        raise AssertionError("a plain document went through PyYAML's full constructor")

    expected = yaml.safe_load(PLAIN)
    monkeypatch.setattr(yaml_source.yaml, "load", no_full_constructor)
    data = _read(tmp_path, PLAIN)
    assert data == expected
    assert data["again"] is data["shared"]  # type: ignore[index]  # an alias is the same object, as in PyYAML


@pytest.mark.parametrize("text", list(UNUSUAL.values()), ids=list(UNUSUAL))
def test_unusual_documents_equal_pyyaml(tmp_path: Path, text: str) -> None:
    assert _read(tmp_path, text) == yaml.safe_load(text)


def test_a_duplicate_key_is_still_located(tmp_path: Path) -> None:
    with pytest.raises(PipelineSpecError) as info:
        _read(tmp_path, "pipeline: p\nsteps:\n  a: {sql: SELECT 1}\n  a: {sql: SELECT 2}\n")
    problem = info.value.problems[0]
    assert (problem.line, problem.column) == (4, 3)
    assert problem.message.startswith("duplicate key `a` (first given on line 3)")


def test_an_unknown_tag_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineSpecError) as info:
        _read(tmp_path, "pipeline: p\nx: !python/name:os.system\n")
    assert info.value.problems[0].line == 2
