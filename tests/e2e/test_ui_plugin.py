"""The data-stack view in Airflow's UI, end to end: a real api-server, scheduler and dag-processor on the
shipped DAG files (dags/) and the pipelines of tests/unit/ui/_project.py, one pipeline run (and the
data-scheduled run it starts), then the page in Debian's headless chromium.

The DOM chromium renders must hold exactly the nodes and edges of the YAML's graph, with the runs and
Asset events the stack produced and links into Airflow's UI; the screenshot is kept in
.osds/test-artifacts/ui-data-stack.png. A missing chromium fails the test.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_osds.localrun import LocalStack
from airflow_osds.stack import AirflowStack
from airflow_osds.ui.graph import stack_graph
from tests.unit.ui._project import write_pipelines

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = REPO_ROOT / ".osds" / "test-artifacts" / "ui-data-stack.png"
PIPELINE_DAGS = {"orders", "stats", "publish"}


@pytest.fixture(scope="module")
def stack(postgres: LocalStack) -> Iterator[AirflowStack]:
    """The project as a user lays it out: the shipped dags/ next to include/pipelines/ (found by default)."""
    root = postgres.state_dir / "ui-stack"
    shutil.copytree(REPO_ROOT / "dags", root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    write_pipelines(root / "include" / "pipelines")
    # Nothing here defers: no triggerer.
    stack = AirflowStack(postgres, root, metadata_db="airflow_ui", warehouse_db="wh_ui",
                         components=("api-server", "scheduler", "dag-processor"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    node: str | None  # data-node-id of the enclosing node group
    text: str = ""


@dataclass
class Dom(HTMLParser):
    """The elements of chromium's --dump-dom output, each with the graph node it sits in."""

    elements: list[Element] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._groups: list[str | None] = []
        self._text: Element | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "g":
            self._groups.append(values.get("data-node-id") or (self._groups[-1] if self._groups else None))
        element = Element(tag, values, self._groups[-1] if self._groups else None)
        self.elements.append(element)
        if tag in ("text", "li", "p", "title"):
            self._text = element

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self._groups:
            self._groups.pop()
        if self._text is not None and tag == self._text.tag:
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.text += data

    def find(self, tag: str, **attrs: str) -> list[Element]:
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [e for e in self.elements if e.tag == tag and all(e.attrs.get(k) == v for k, v in wanted.items())]

    def inside(self, node_id: str, tag: str, **attrs: str) -> Element:
        (element,) = [e for e in self.find(tag, **attrs) if e.node == node_id]
        return element


def chromium(*args: str, url: str) -> str:
    with tempfile.TemporaryDirectory(prefix="osds-chromium-") as profile:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
             "--virtual-time-budget=10000", *args, url],
            capture_output=True, text=True, timeout=90,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_data_stack_view_shows_the_yaml_graph_with_runs_events_and_links(stack: AirflowStack) -> None:
    stack.wait_for_dags(PIPELINE_DAGS, unexpected_error=lambda f: not f.endswith("osds_pipeline_errors.py"))
    run_id = stack.trigger("orders")
    stack.wait_for_run("orders", run_id)
    stats_run = stack.wait_for_run_of_type("stats", "asset_triggered")  # orders wrote shop.orders

    client = httpx.Client(base_url=stack.base_url, timeout=30)
    # The nav link and the app are registered by the plugin the api-server loaded.
    (plugin,) = [p for p in client.get("/api/v2/plugins").json()["plugins"] if p["name"] == "osds"]
    (view,) = plugin["external_views"]
    assert (view["name"], view["href"], view["url_route"], view["destination"]) == ("Data stack", "/osds/", "data-stack", "nav")
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/osds"]
    # The app sits behind Airflow's authentication: a bad token is refused as on Airflow's own API.
    bad = {"Authorization": "Bearer not-a-token"}
    assert client.get("/api/v2/dags", headers=bad).status_code == 403
    assert [client.get(path, headers=bad).status_code for path in ("/osds/api/graph", "/osds/")] == [403, 403]
    assert client.get("/osds/static/data_stack.js", headers=bad).status_code == 200  # code only, no data

    expected = stack_graph(stack.root / "include" / "pipelines", default_warehouse="warehouse")
    nodes = {n["id"]: n["kind"] for n in expected["nodes"]}
    edges = {(e["from"], e["to"], e["kind"]) for e in expected["edges"]}
    assert nodes == {"pipeline:orders": "pipeline", "pipeline:stats": "pipeline", "pipeline:publish": "pipeline",
                     "warehouse.shop.orders": "table", "warehouse.shop.order_stats": "table",
                     "dashboard:bi/sales": "dashboard", "destination:crm/stats": "destination"}
    assert len(edges) == 6
    asset_ids = {a["name"]: a["id"] for a in client.get("/api/v2/assets", params={"limit": 100}).json()["assets"]}

    dom = Dom()
    dom.feed(chromium("--dump-dom", url=f"{stack.base_url}/osds/"))
    (body,) = dom.find("body")
    assert body.attrs.get("data-loaded") == "true", dom.find("p", id="summary")
    groups = {e.attrs["data-node-id"]: e.attrs for e in dom.find("g", **{"class": "node"})}
    assert {node_id: attrs["data-kind"] for node_id, attrs in groups.items()} == nodes
    assert {(e.attrs["data-from"], e.attrs["data-to"], e.attrs["data-kind"]) for e in dom.find("path", **{"class": "edge"})} == edges

    # Each pipeline: the state of its last run, and a link to its DAG that leaves the iframe.
    assert (groups["pipeline:orders"]["data-state"], groups["pipeline:orders"]["data-run-id"]) == ("success", run_id)
    assert groups["pipeline:stats"]["data-run-id"] == stats_run["dag_run_id"]
    assert "last run: success · asset_triggered" in dom.inside("pipeline:stats", "text", data_field="last-run").text
    assert groups["pipeline:publish"]["data-state"] == "none"
    assert dom.inside("pipeline:publish", "text", data_field="last-run").text == "no run yet"
    for dag_id in PIPELINE_DAGS:
        link = dom.inside(f"pipeline:{dag_id}", "a")
        assert (link.attrs["href"], link.attrs["target"]) == (f"/dags/{dag_id}", "_top")

    # Each data node: its Asset page and its last event (the run that wrote it), or none yet.
    for node_id in (n for n, kind in nodes.items() if kind != "pipeline"):
        assert dom.inside(node_id, "a").attrs["href"] == f"/assets/{asset_ids[node_id]}", node_id
        assert groups[node_id]["data-asset-id"] == str(asset_ids[node_id])
    events = client.get("/api/v2/assets/events", params={"asset_id": asset_ids["warehouse.shop.orders"]}).json()
    (event,) = events["asset_events"]
    assert event["source_run_id"] == run_id
    assert groups["warehouse.shop.orders"]["data-last-event"] == event["timestamp"].replace("Z", "+00:00")
    assert dom.inside("warehouse.shop.orders", "text", data_field="last-event").text.startswith("last event: 20")
    assert dom.inside("warehouse.shop.orders", "text", data_field="last-event-more").text == "by orders"
    assert dom.inside("warehouse.shop.order_stats", "text", data_field="last-event-more").text == "by stats"
    assert "data-last-event" not in groups["dashboard:bi/sales"]
    assert dom.inside("dashboard:bi/sales", "text", data_field="last-event").text == "no event yet"

    # The broken file is listed, located, and hides nothing.
    (error,) = dom.find("li", data_error_file="broken.yml")
    assert error.text.startswith("broken.yml:4:5: ") and "did you mean" in error.text

    # Inside Airflow's UI, the view's page frames the app.
    ui = Dom()
    ui.feed(chromium("--dump-dom", url=f"{stack.base_url}/plugin/data-stack"))
    assert [f.attrs.get("src") for f in ui.find("iframe")] == ["/osds/"]

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    chromium(f"--screenshot={SCREENSHOT}", "--window-size=1400,900", "--hide-scrollbars", url=f"{stack.base_url}/osds/")
    assert png_size(SCREENSHOT) == (1400, 900)
    assert SCREENSHOT.stat().st_size > 20_000, "the screenshot is (nearly) blank"
