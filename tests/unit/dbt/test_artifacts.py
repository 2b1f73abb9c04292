"""Parsing of real dbt 1.11 artifacts, their errors, the table renderer and the manifest cache."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from airflow_osds.dbt.artifacts import (
    Manifest,
    NodeResult,
    RunResults,
    cache_info,
    clear_manifest_cache,
    load_manifest,
    render_table,
)
from airflow_osds.dbt.errors import DbtArtifactError
from airflow_osds.exceptions import OsdsError

from .conftest import DATA

TOTALS = "model.shop.customer_totals"


class TestManifest:
    def test_keeps_models_seeds_snapshots_tests_and_sources(self, manifest: Manifest) -> None:
        kinds: dict[str, int] = {}
        for n in manifest.nodes.values():
            kinds[n.resource_type] = kinds.get(n.resource_type, 0) + 1
        assert kinds == {"model": 7, "seed": 2, "snapshot": 1, "test": 6}
        assert list(manifest.sources) == ["source.shop.snowplow.events"]
        assert manifest.project_name == "shop"
        assert manifest.dbt_version.startswith("1.11")
        assert manifest.schema_version.endswith("/manifest/v12.json")

    def test_model_fields(self, manifest: Manifest) -> None:
        n = manifest.nodes[TOTALS]
        assert (n.name, n.resource_type, n.package_name) == ("customer_totals", "model", "shop")
        assert n.original_file_path == "models/marts/customer_totals.sql"
        assert n.path == "marts/customer_totals.sql"
        assert n.fqn == ("shop", "marts", "customer_totals")
        assert n.tags == ("finance",)
        assert set(n.depends_on) == {"model.shop.stg_customers", "model.shop.int_order_totals"}
        assert (n.database, n.schema, n.identifier) == ("dbt", "marts", "customer_totals_v1")
        assert n.relation == ("marts", "customer_totals_v1")
        assert n.materialized == "table" and not n.is_ephemeral
        assert n.relation_name == '"dbt"."marts"."customer_totals_v1"'

    def test_ephemeral_seed_snapshot(self, manifest: Manifest) -> None:
        eph = manifest.nodes["model.shop.int_order_totals"]
        assert eph.is_ephemeral and eph.relation is None and eph.relation_name is None
        assert manifest.nodes["seed.shop.raw_orders"].relation == ("raw", "raw_orders")
        snap = manifest.nodes["snapshot.shop.customers_snapshot"]
        assert snap.materialized == "snapshot" and snap.relation == ("snapshots", "customers_snapshot")

    def test_tests_and_sources(self, manifest: Manifest) -> None:
        test = manifest.nodes["test.shop.not_null_orders_enriched_first_name.0cf376c533"]
        assert test.attached_node == "model.shop.orders_enriched" and test.relation is None
        assert len(manifest.tests_by_node["model.shop.stg_orders"]) == 2
        src = manifest.sources["source.shop.snowplow.events"]
        assert (src.source_name, src.name, src.schema, src.identifier) == ("snowplow", "events", "atomic", "events")
        assert manifest.get("source.shop.snowplow.events") is src and manifest.get("nope") is None

    def test_parent_and_child_maps(self, manifest: Manifest) -> None:
        assert set(manifest.parent_map[TOTALS]) == {"model.shop.stg_customers", "model.shop.int_order_totals"}
        assert "model.shop.stg_events" in manifest.child_map["source.shop.snowplow.events"]
        assert set(manifest.children["model.shop.stg_orders"]) >= {"model.shop.int_order_totals", "model.shop.orders_enriched"}

    def test_records_are_frozen(self, manifest: Manifest) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            manifest.nodes[TOTALS].name = "x"  # type: ignore[misc]
        with pytest.raises(TypeError):
            manifest.nodes["x"] = manifest.nodes[TOTALS]  # type: ignore[index]

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(DbtArtifactError, match="not found; run `dbt parse`") as info:
            Manifest.from_path(tmp_path / "manifest.json")
        assert isinstance(info.value, OsdsError) and info.value.path.endswith("manifest.json")

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("{not json", "cannot read manifest"),
            ("[]", "not a dbt manifest: Expected `object`, got `array`"),
            ("{}", "no 'nodes' object"),
            ('{"nodes": {"model.a.b": {"resource_type": "model"}}}', "malformed manifest node"),
        ],
    )
    def test_malformed(self, tmp_path: Path, content: str, message: str) -> None:
        path = tmp_path / "manifest.json"
        path.write_text(content)
        with pytest.raises(DbtArtifactError, match=message):
            Manifest.from_path(path)

    def test_run_results_passed_as_manifest(self) -> None:
        with pytest.raises(DbtArtifactError, match="expected a dbt manifest artifact"):
            Manifest.from_path(DATA / "run_results.json")


class TestRunResults:
    def test_invocation(self, run_results: RunResults, manifest: Manifest) -> None:
        assert run_results.command == "build"
        assert run_results.args["which"] == "build"
        assert run_results.invocation_id and len(run_results) == 15
        assert run_results.elapsed_time > 0
        assert run_results.dbt_version.startswith("1.11")

    def test_statuses(self, run_results: RunResults) -> None:
        assert run_results.status_counts() == {"success": 7, "pass": 5, "error": 1, "fail": 1, "skipped": 1}
        by_id = run_results.by_id()
        assert by_id["model.shop.events_daily"].status == "skipped"
        assert "does not exist" in (by_id["model.shop.stg_events"].message or "")

    def test_failed(self, run_results: RunResults) -> None:
        failed = run_results.failed()
        assert [r.unique_id for r in failed] == [
            "model.shop.stg_events",
            "test.shop.not_null_orders_enriched_first_name.0cf376c533",
        ]
        assert failed[1].failures == 1 and failed[1].name == "not_null_orders_enriched_first_name"

    def test_rows_by_node(self, run_results: RunResults) -> None:
        # Views report -1 (unknown) and tests count their own query's row: neither is data.
        assert run_results.rows_by_node() == {
            "seed.shop.raw_customers": 3,
            "seed.shop.raw_orders": 5,
            "model.shop.orders_enriched": 5,
            "model.shop.customer_totals": 3,
            "snapshot.shop.customers_snapshot": 3,
        }

    def test_relation_name_joined_from_manifest(self, run_results: RunResults) -> None:
        by_id = run_results.by_id()
        # dbt leaves relation_name null for seeds in run_results; the manifest has it.
        assert by_id["seed.shop.raw_orders"].relation_name == '"dbt"."raw"."raw_orders"'
        alone = RunResults.from_path(DATA / "run_results.json").by_id()
        assert alone["seed.shop.raw_orders"].relation_name is None

    def test_from_dict_minimal_and_errors(self) -> None:
        r = RunResults.from_dict({"results": [{"unique_id": "model.p.m", "status": "Success"}]})
        assert r.results[0] == NodeResult("model.p.m", "success", 0.0, None, None, None, None)
        with pytest.raises(DbtArtifactError, match="no 'results' list"):
            RunResults.from_dict({})
        with pytest.raises(DbtArtifactError, match="malformed node result"):
            RunResults.from_dict({"results": [{"status": "success"}]})
        with pytest.raises(DbtArtifactError, match="expected a dbt run-results artifact"):
            RunResults.from_path(DATA / "manifest.json")

    def test_source_result_name(self) -> None:
        r = NodeResult("source.shop.snowplow.events", "pass", 0.1, None, None, None, None)
        assert (r.resource_type, r.name) == ("source", "snowplow.events")


class TestRenderTable:
    def test_real_run(self, run_results: RunResults) -> None:
        text = render_table(run_results)
        lines = text.splitlines()
        assert lines[0].split() == ["status", "time", "rows", "failures", "node"]
        assert set(lines[1].replace(" ", "")) == {"-"}
        assert len(lines) == 2 + 15 + 1
        assert lines[-1].startswith("15 nodes in ") and lines[-1].endswith(
            "1 error, 1 fail, 5 pass, 1 skipped, 7 success"
        )
        fail = next(line for line in lines if "not_null_orders_enriched_first_name" in line)
        assert fail.split()[0] == "fail" and fail.split()[2:4] == ["-", "1"]
        # Fixed width: the node column starts at the same offset on every row.
        offset = lines[0].index("node")
        assert all(line[offset - 2 : offset] == "  " for line in lines[2:-1])

    def test_exact(self) -> None:
        results = [
            NodeResult("seed.p.raw", "success", 1.234, "INSERT 10", None, 10, None),
            NodeResult("test.p.not_null_x.abc", "fail", 0.5, "Got 3 results", 3, None, None),
        ]
        lines = render_table(results).splitlines()
        assert lines == [
            "status    time  rows  failures  node",
            "-------  -----  ----  --------  ---------------",
            "success  1.23s    10         -  seed raw",
            "fail     0.50s     -         3  test not_null_x",
            "2 nodes: 1 fail, 1 success",
        ]

    def test_empty(self) -> None:
        assert render_table([]).splitlines()[-1] == "0 nodes"


class TestCache:
    @pytest.fixture(autouse=True)
    def _clean(self) -> None:
        clear_manifest_cache()

    @pytest.fixture()
    def project(self, tmp_path: Path) -> Path:
        (tmp_path / "target").mkdir()
        shutil.copyfile(DATA / "manifest.json", tmp_path / "target" / "manifest.json")
        return tmp_path

    def test_hit_then_miss_on_mtime_change(self, project: Path) -> None:
        first = load_manifest(project)
        assert load_manifest(str(project), "target") is first
        assert cache_info() == {"hits": 1, "misses": 1, "size": 1}
        path = project / "target" / "manifest.json"
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        second = load_manifest(project)
        assert second is not first and len(second.nodes) == len(first.nodes)
        assert cache_info() == {"hits": 1, "misses": 2, "size": 1}

    def test_miss_on_content_change(self, project: Path) -> None:
        path = project / "target" / "manifest.json"
        load_manifest(project)
        data = json.loads(path.read_text())
        del data["nodes"][TOTALS]
        st = path.stat()
        path.write_text(json.dumps(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: the size tells
        assert TOTALS not in load_manifest(project).nodes

    def test_absolute_target_dir_and_missing(self, project: Path, tmp_path: Path) -> None:
        assert load_manifest("/nonexistent", project / "target").project_name == "shop"
        with pytest.raises(DbtArtifactError, match="manifest not found"):
            load_manifest(tmp_path / "elsewhere")
        clear_manifest_cache()
        assert cache_info() == {"hits": 0, "misses": 0, "size": 0}
