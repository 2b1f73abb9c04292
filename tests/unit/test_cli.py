"""`osds validate | schema | graph | version` as a user runs them (the installed console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from airflow_osds import __version__

OSDS = str(Path(sys.executable).parent / "osds")
REPO_PIPELINES = Path(__file__).resolve().parents[2] / "include" / "pipelines"


def _osds(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OSDS, *args], capture_output=True, text=True, timeout=120)


def test_version() -> None:
    result = _osds("version")
    assert (result.returncode, result.stdout.strip()) == (0, __version__)


def test_validate_accepts_the_demo_pipelines(repo_dbt_manifests: None) -> None:
    result = _osds("validate", str(REPO_PIPELINES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 error(s)" in result.stdout


def test_validate_reports_errors_and_warnings_and_fails(tmp_path: Path) -> None:
    (tmp_path / "good.yml").write_text("pipeline: good\nsteps:\n  a:\n    sql: SELECT * FROM raw.x\n")
    (tmp_path / "bad.yml").write_text("pipeline: bad\nsteps:\n  a:\n    sql: SELECT 1\n    aftr: []\n")
    result = _osds("validate", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{tmp_path / 'bad.yml'}:5:5: error: unknown key `aftr`: did you mean `after`? (steps.a.aftr)" in lines
    assert any(line.startswith(f"{tmp_path / 'good.yml'}:3:3: warning: step `a` reads warehouse:raw.x") for line in lines)
    assert lines[-1] == "2 file(s) checked: 1 valid pipeline(s), 1 error(s), 1 warning(s)"

    as_json = json.loads(_osds("validate", "--format", "json", str(tmp_path)).stdout)
    assert as_json["files"] == 2 and as_json["pipelines"] == ["good"]
    assert as_json["errors"] == [
        {"file": str(tmp_path / "bad.yml"), "line": 5, "column": 5, "location": "steps.a.aftr",
         "message": "unknown key `aftr`: did you mean `after`?"}
    ]
    assert [w["location"] for w in as_json["warnings"]] == ["steps.a"]


def test_validate_warnings_alone_pass(tmp_path: Path) -> None:
    (tmp_path / "good.yml").write_text("pipeline: good\nsteps:\n  a:\n    sql: SELECT * FROM raw.x\n")
    assert _osds("validate", str(tmp_path)).returncode == 0


def test_validate_without_files_fails(tmp_path: Path) -> None:
    assert _osds("validate", str(tmp_path)).returncode == 1
    assert _osds("validate", str(tmp_path / "missing")).returncode == 1


def test_schema_validates_the_demo_pipelines_and_rejects_typos(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert _osds("schema", "-o", str(out)).returncode == 0
    schema = json.loads(out.read_text())
    for path in REPO_PIPELINES.glob("*.yml"):
        # Editors see YAML dates as strings, as the JSON round trip does here.
        jsonschema.validate(json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str)), schema)
    bad = yaml.safe_load("pipeline: x\nsteps:\n  a: {sql: SELECT 1, retrys: 2}\n")
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as exc:
        assert "retrys" in exc.message
    else:
        raise AssertionError("the schema accepted an unknown key")
    defaults = json.loads(_osds("schema", "--defaults").stdout)
    assert "pipeline" not in defaults["properties"] and "defaults" in defaults["properties"]


def test_graph_prints_mermaid(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("pipeline: a\nsteps:\n  s: {sql: 'INSERT INTO shop.orders SELECT 1'}\n")
    (tmp_path / "b.yml").write_text("pipeline: b\nschedule: data\nsteps:\n  s: {sql: 'INSERT INTO shop.n SELECT count(*) FROM shop.orders'}\n")
    result = _osds("graph", str(tmp_path))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    assert "  p_a --> t_warehouse_shop_orders" in lines
    assert "  t_warehouse_shop_orders ==> p_b" in lines
    assert '  t_warehouse_shop_orders[("warehouse.shop.orders")]' in lines


def test_committed_schemas_are_current(tmp_path: Path) -> None:
    """schemas/*.json (what editors load) must match what `osds schema` generates today."""
    repo = Path(__file__).resolve().parents[2]
    for name, args in (("pipeline.schema.json", []), ("defaults.schema.json", ["--defaults"])):
        generated = _osds("schema", *args).stdout
        assert (repo / "schemas" / name).read_text() == generated, f"regenerate with: osds schema {' '.join(args)} -o schemas/{name}"


def test_graph_node_ids_of_names_that_differ_only_in_dots_and_underscores_differ() -> None:
    from airflow_osds.factory.graph import _node_id

    assert _node_id("t", "warehouse.raw.crm_contacts") != _node_id("t", "warehouse.raw_crm.contacts")
