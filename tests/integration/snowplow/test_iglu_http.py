"""The resolver over real HTTP: Iglu Central served by ``http.server`` on 127.0.0.1.

The server is a real registry (static layout, or Iglu-Server style under ``/api`` with an
``apikey`` and the list endpoint). The only fakes are injected faults: the next N answers
are 503/429, a path answers a fixed status, a connection is dropped, an answer is slow.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.snowplow.iglu import (
    HttpRepository,
    Resolver,
    SchemaKey,
    SchemaListNotFoundError,
    SchemaResolutionError,
    StaticRepository,
)
from tests.unit.snowplow._support import WEB_PAGE, Clock, iglu_central, self_describing, write_registry

MISSING = SchemaKey.parse("iglu:com.acme/missing/jsonschema/1-0-0")
LINK_CLICK = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1")


class Registry(ThreadingHTTPServer):
    """A static Iglu registry over HTTP, optionally Iglu-Server-like, with injectable faults."""

    daemon_threads = True

    def __init__(self, root: Path, *, prefix: str = "", apikey: str | None = None, lists: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.prefix = prefix
        self.apikey = apikey
        self.lists = lists
        self.requests: Counter[str] = Counter()
        self.headers_seen: list[dict[str, str]] = []
        self.fail_next: list[int] = []  # statuses for the next requests, any path
        self.fixed: dict[str, int] = {}  # path -> status, every time
        self.drop_next = 0  # close the connection without answering
        self.delay = 0.0
        self.list_html = False  # answer list paths with 200 and an HTML page
        self.lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.prefix}"

    def path_of(self, key: SchemaKey) -> str:
        return f"{self.prefix}/schemas/{key.path}"


class _Handler(BaseHTTPRequestHandler):
    server: Registry

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        registry = self.server
        with registry.lock:
            registry.requests[self.path] += 1
            registry.headers_seen.append(dict(self.headers))
            fault = registry.fail_next.pop(0) if registry.fail_next else registry.fixed.get(self.path)
            drop = registry.drop_next > 0
            if drop:
                registry.drop_next -= 1
        if registry.delay:
            time.sleep(registry.delay)
        if drop:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if fault is not None:
            self._send(fault, json.dumps({"message": f"injected {fault}"}).encode())
            return
        if registry.apikey is not None and self.headers.get("apikey") != registry.apikey:
            self._send(401, b'{"message":"Not authorized"}')
            return
        if not self.path.startswith(registry.prefix + "/schemas/"):
            self._send(404)
            return
        parts = self.path[len(registry.prefix + "/schemas/") :].split("/")
        if len(parts) == 4 and parts[3].isdigit():
            self._list(parts)
            return
        file = registry.root / "schemas" / "/".join(parts)
        if len(parts) == 4 and file.is_file():
            self._send(200, file.read_bytes())
        elif file.is_dir():
            self._send(200, b"<html>a directory listing</html>", "text/html")
        else:
            self._send(404, b'{"message":"The schema is not found"}')

    def _list(self, parts: list[str]) -> None:
        vendor, name, fmt, model = parts
        directory = self.server.root / "schemas" / vendor / name / fmt
        if self.server.list_html:
            self._send(200, b"<html>not here</html>", "text/html")
            return
        if not self.server.lists:  # a static registry has no such file
            self._send(404)
            return
        versions = sorted(p.name for p in directory.glob(f"{model}-*-*")) if directory.is_dir() else []
        if not versions:
            self._send(404, b'{"message":"The schema is not found"}')
            return
        self._send(200, json.dumps([f"iglu:{vendor}/{name}/{fmt}/{v}" for v in versions]).encode())


def _serve(registry: Registry) -> Iterator[Registry]:
    thread = threading.Thread(target=registry.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        registry.shutdown()
        registry.server_close()
        thread.join(5)


@pytest.fixture
def static_http() -> Iterator[Registry]:
    yield from _serve(Registry(iglu_central()))


@pytest.fixture
def iglu_server() -> Iterator[Registry]:
    yield from _serve(Registry(iglu_central(), prefix="/api", apikey="s3cret", lists=True))


@pytest.fixture
def central_schema() -> dict[str, Any]:
    return json.loads((iglu_central() / "schemas" / WEB_PAGE.path).read_text())


def http_repo(registry: Registry, **kwargs: Any) -> HttpRepository:
    kwargs.setdefault("name", "http")
    kwargs.setdefault("retry_wait", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return HttpRepository(registry.uri, **kwargs)


def test_a_schema_is_fetched_once_per_resolver(static_http: Registry, central_schema: dict[str, Any]) -> None:
    with Resolver([http_repo(static_http)]) as resolver:
        for _ in range(5):
            assert resolver.lookup(WEB_PAGE) == central_schema
        assert resolver.validator(WEB_PAGE)({"id": "6e4a2e3c-0d7b-4c8f-9a32-123456789abc"}) == []
    assert static_http.requests == {static_http.path_of(WEB_PAGE): 1}


def test_a_missing_schema_is_asked_once_per_ttl(static_http: Registry) -> None:
    clock = Clock()
    with Resolver([http_repo(static_http)], cache_ttl=30, clock=clock) as resolver:
        for _ in range(4):
            with pytest.raises(SchemaResolutionError) as excinfo:
                resolver.lookup(MISSING)
            clock.now += 5
        (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "http"]
        assert entry["errors"] == [{"error": "NotFound"}] and entry["attempts"] == 1
        assert static_http.requests[static_http.path_of(MISSING)] == 1
        clock.now += 30
        with pytest.raises(SchemaResolutionError):
            resolver.lookup(MISSING)
    assert static_http.requests[static_http.path_of(MISSING)] == 2


def test_transient_errors_are_retried(static_http: Registry, central_schema: dict[str, Any]) -> None:
    static_http.fail_next = [503, 429]
    with Resolver([http_repo(static_http, retries=2)]) as resolver:
        assert resolver.lookup(WEB_PAGE) == central_schema
    assert static_http.requests[static_http.path_of(WEB_PAGE)] == 3


def test_exhausted_retries_are_a_repo_failure_retried_after_a_back_off(static_http: Registry, central_schema: dict[str, Any]) -> None:
    path = static_http.path_of(WEB_PAGE)
    static_http.fixed[path] = 503
    clock = Clock()
    with Resolver([http_repo(static_http, retries=2)], cache_ttl=600, clock=clock) as resolver:
        with pytest.raises(SchemaResolutionError) as excinfo:
            resolver.lookup(WEB_PAGE)
        (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "http"]
        assert entry["errors"] == [{"error": "RepoFailure", "message": f"HTTP 503 from {static_http.uri}/schemas/{WEB_PAGE.path}"}]
        assert entry["attempts"] == 3
        assert static_http.requests[path] == 3
        assert "RepoFailure" in str(excinfo.value) and "'http'" in str(excinfo.value)
        clock.now += 0.5  # within the back-off: the cached failure, no request
        with pytest.raises(SchemaResolutionError):
            resolver.lookup(WEB_PAGE)
        assert static_http.requests[path] == 3
        clock.now += 5  # after it: asked again, and the history keeps counting
        with pytest.raises(SchemaResolutionError) as excinfo:
            resolver.lookup(WEB_PAGE)
        (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "http"]
        assert entry["attempts"] == 6 and static_http.requests[path] == 6
        del static_http.fixed[path]
        clock.now += 60
        assert resolver.lookup(WEB_PAGE) == central_schema


def test_a_refused_request_is_a_client_failure_and_not_retried(static_http: Registry) -> None:
    path = static_http.path_of(WEB_PAGE)
    static_http.fixed[path] = 403
    with Resolver([http_repo(static_http, retries=3)]) as resolver, pytest.raises(SchemaResolutionError) as excinfo:
        resolver.lookup(WEB_PAGE)
    (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "http"]
    assert entry["errors"][0]["error"] == "ClientFailure" and "HTTP 403" in entry["errors"][0]["message"]
    assert static_http.requests[path] == 1


def test_a_dropped_connection_is_retried(static_http: Registry, central_schema: dict[str, Any]) -> None:
    static_http.drop_next = 1
    with Resolver([http_repo(static_http, retries=1)]) as resolver:
        assert resolver.lookup(WEB_PAGE) == central_schema
    static_http.drop_next = 5
    with Resolver([http_repo(static_http, retries=1)]) as resolver, pytest.raises(SchemaResolutionError) as excinfo:
        resolver.lookup(LINK_CLICK)
    (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "http"]
    assert entry["errors"][0]["error"] == "RepoFailure" and entry["attempts"] == 2
    assert "RemoteProtocolError" in entry["errors"][0]["message"] or "ReadError" in entry["errors"][0]["message"]


def test_a_slow_answer_times_out(static_http: Registry) -> None:
    static_http.delay = 0.5
    with Resolver([http_repo(static_http, retries=0, timeout=0.1)]) as resolver, pytest.raises(SchemaResolutionError) as excinfo:
        resolver.lookup(WEB_PAGE)
    (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "http"]
    assert entry["errors"][0]["error"] == "RepoFailure" and "Timeout" in entry["errors"][0]["message"]


def test_nobody_listening_is_a_repo_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo = HttpRepository(f"http://127.0.0.1:{port}", name="gone", retries=1, retry_wait=0.01)
    with Resolver([repo]) as resolver, pytest.raises(SchemaResolutionError) as excinfo:
        resolver.lookup(WEB_PAGE)
    (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "gone"]
    assert entry["errors"][0]["error"] == "RepoFailure" and "ConnectError" in entry["errors"][0]["message"]
    assert entry["attempts"] == 2


def test_priority_between_a_static_directory_and_http(static_http: Registry, tmp_path: Path) -> None:
    local = write_registry(tmp_path / "local", {WEB_PAGE.uri: self_describing(WEB_PAGE.uri, {"description": "local copy", "type": "object"})})
    http_first = Resolver([StaticRepository(local, name="local", priority=1), http_repo(static_http, priority=0)])
    assert http_first.lookup(WEB_PAGE)["description"] == "Schema for a web page context"
    assert static_http.requests[static_http.path_of(WEB_PAGE)] == 1
    local_first = Resolver([StaticRepository(local, name="local", priority=0), http_repo(static_http, priority=1)])
    assert local_first.lookup(WEB_PAGE)["description"] == "local copy"
    by_vendor = Resolver(
        [StaticRepository(local, name="local", priority=5, vendor_prefixes=["com.snowplowanalytics"]), http_repo(static_http, priority=0)]
    )
    assert by_vendor.lookup(WEB_PAGE)["description"] == "local copy"
    assert static_http.requests[static_http.path_of(WEB_PAGE)] == 1
    # A miss in the first repository falls through to the next, in order.
    missing_locally = Resolver([StaticRepository(local, name="local", priority=0), http_repo(static_http, priority=1)])
    assert missing_locally.lookup(LINK_CLICK)["self"]["version"] == "1-0-1"
    for resolver in (http_first, local_first, by_vendor, missing_locally):
        resolver.close()


def test_an_iglu_server_gets_the_apikey_and_lists(iglu_server: Registry) -> None:
    with Resolver([http_repo(iglu_server, name="server", apikey="s3cret")]) as resolver:
        assert resolver.lookup(WEB_PAGE)["self"]["name"] == "web_page"
        versions = resolver.versions("com.snowplowanalytics.snowplow", "link_click", 1)
    assert [k.version for k in versions] == ["1-0-0", "1-0-1"]
    assert iglu_server.requests[f"/api/schemas/{WEB_PAGE.path}"] == 1
    assert iglu_server.requests["/api/schemas/com.snowplowanalytics.snowplow/link_click/jsonschema/1"] == 1
    assert all(h.get("apikey") == "s3cret" for h in iglu_server.headers_seen)


def test_a_wrong_apikey_is_a_client_failure(iglu_server: Registry) -> None:
    with Resolver([http_repo(iglu_server, name="server", apikey="wrong")]) as resolver, pytest.raises(SchemaResolutionError) as excinfo:
        resolver.lookup(WEB_PAGE)
    (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "server"]
    assert entry["errors"][0]["error"] == "ClientFailure" and "HTTP 401" in entry["errors"][0]["message"]


def test_the_apikey_is_sent_with_a_caller_supplied_client(iglu_server: Registry) -> None:
    import httpx

    with httpx.Client() as client:
        repo = HttpRepository(iglu_server.uri, name="server", apikey="s3cret", client=client)
        assert Resolver([repo]).lookup(WEB_PAGE)["self"]["name"] == "web_page"


def test_a_static_http_registry_cannot_list(static_http: Registry, tmp_path: Path) -> None:
    with Resolver([http_repo(static_http)]) as resolver, pytest.raises(SchemaListNotFoundError) as excinfo:
        resolver.versions("com.snowplowanalytics.snowplow", "link_click", 1)
    (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "http"]
    assert entry["errors"] == [{"error": "NotFound"}]
    # ... and the next repository that can list answers.
    local = StaticRepository(iglu_central(), name="local", priority=1)
    with Resolver([http_repo(static_http), local]) as resolver:
        assert [k.version for k in resolver.versions("com.snowplowanalytics.snowplow", "link_click", 1)] == ["1-0-0", "1-0-1"]


def test_a_registry_answering_html_for_the_list_path_cannot_list(static_http: Registry) -> None:
    # Some static hosts answer every unknown path with 200 and an HTML page.
    static_http.list_html = True
    with Resolver([http_repo(static_http)]) as resolver, pytest.raises(SchemaListNotFoundError) as excinfo:
        resolver.versions("com.snowplowanalytics.snowplow", "link_click", 1)
    (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "http"]
    assert entry["errors"][0]["error"] == "ClientFailure"
    assert "not an Iglu Server list endpoint" in entry["errors"][0]["message"]


def test_from_config_with_an_http_repository(iglu_server: Registry) -> None:
    config = {
        "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
        "data": {
            "cacheSize": 500,
            "cacheTtl": 600,
            "repositories": [
                {"name": "Iglu Server", "priority": 0, "vendorPrefixes": [], "connection": {"http": {"uri": iglu_server.uri, "apikey": "s3cret"}}}
            ],
        },
    }
    with Resolver.from_config(config) as resolver:
        assert resolver.lookup(LINK_CLICK)["self"]["version"] == "1-0-1"
    assert iglu_server.headers_seen[-1]["apikey"] == "s3cret"


def test_concurrent_lookups_make_one_request(static_http: Registry) -> None:
    with Resolver([http_repo(static_http)]) as resolver:
        barrier = threading.Barrier(6)
        results: list[Any] = []

        def work() -> None:
            barrier.wait()
            results.append(resolver.lookup(LINK_CLICK))

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 6 and all(r == results[0] for r in results)
    assert static_http.requests[static_http.path_of(LINK_CLICK)] == 1
