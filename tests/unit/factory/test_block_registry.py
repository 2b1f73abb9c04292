"""The block registry imports a built-in block's module only when a pipeline uses the block."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from airflow_osds.factory.blocks import BLOCKS

# A fresh interpreter: this test process has imported every block already.
_SCRIPT = """
import json, sys
from pathlib import Path
def blocks():
    return sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("airflow_osds.factory.blocks.") and not m.rsplit(".", 1)[1].startswith("_"))
import airflow_osds.factory.loader as loader
after_import = blocks()
parsed = loader.parse_pipeline_file(Path(sys.argv[1]))
print(json.dumps({"after_import": after_import, "after_parse": blocks(), "step": parsed.spec.steps["a"].block_name}))
"""


def test_only_the_blocks_a_pipeline_uses_are_imported(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("pipeline: p\nsteps:\n  a: {sql: SELECT 1}\n  b: {python: {callable: json.dumps}}\n")
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(path)], capture_output=True, text=True,
                            env=os.environ.copy(), check=False)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # `group` nests steps (the step model refers to it); no other block is imported to read a pipeline.
    assert seen["after_import"] == ["group"]
    assert seen["after_parse"] == ["group", "python", "sql"]
    assert seen["step"] == "sql"
    assert {"dbt", "snowplow", "singer", "superset", "reverse_etl"} <= set(BLOCKS)  # all named, none imported


def test_a_replaced_block_validates_with_its_new_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step model caches each block's validator; replacing the block in the registry replaces it too."""
    from pydantic import BaseModel, ConfigDict

    from airflow_osds.factory.spec import StepSpec

    StepSpec.model_validate({"sql": "SELECT 1"})  # the real sql block's validator is cached now

    class OnlyFile(BaseModel):
        model_config = ConfigDict(extra="forbid")
        file: str

    replaced = dataclasses.replace(BLOCKS["sql"], model=OnlyFile, expand_shorthand=None, shorthand_type=None)
    monkeypatch.setitem(BLOCKS, "sql", replaced)  # type: ignore[index]
    with pytest.raises(ValidationError) as info:
        StepSpec.model_validate({"sql": {"query": "SELECT 1"}})
    assert {e["loc"] for e in info.value.errors()} == {("sql", "query"), ("sql", "file")}
    assert StepSpec.model_validate({"sql": {"file": "x.sql"}}).block == OnlyFile(file="x.sql")
