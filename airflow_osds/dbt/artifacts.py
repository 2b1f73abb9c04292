"""Typed, frozen records read from dbt artifacts (``manifest.json`` v12, ``run_results.json`` v6).

The manifest is read at DAG-parse time, for projects with thousands of nodes and manifests of
tens of megabytes, so parsing is one ``json.load`` followed by plain frozen dataclasses holding
only the fields this provider uses (no pydantic per node, no dbt import). Older schema versions
(manifest v10+, run results v4+) carry the same fields and are accepted too.

:func:`load_manifest` keeps parsed manifests in an in-process cache so one DAG processor
parsing many DAG files that share a dbt project reads and parses the manifest once.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypedDict

from airflow_osds.dbt.errors import DbtArtifactError

__all__ = [
    "FAILED_STATUSES",
    "FreshnessThreshold",
    "FreshnessTime",
    "Manifest",
    "ManifestNode",
    "NodeResult",
    "RunResults",
    "SourceNode",
    "cache_info",
    "clear_manifest_cache",
    "load_manifest",
    "render_table",
]

#: Resource types kept from ``manifest["nodes"]``; analyses, operations, unit tests etc. are dropped.
NODE_TYPES = frozenset({"model", "seed", "snapshot", "test"})

#: Statuses of a node result that mean the node failed. ``partial success`` (a microbatch model
#: with failed batches) is included: reporting it as success would hide lost data.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error", "partial success"})

_EMPTY: Mapping[str, tuple[str, ...]] = MappingProxyType({})


def _read_json(path: Path, kind: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DbtArtifactError(
            str(path), f"{kind} not found; run `osds dbt-parse <project>` (or `dbt parse`) to create it"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError covers JSONDecodeError and bad UTF-8
        raise DbtArtifactError(str(path), f"cannot read {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise DbtArtifactError(str(path), f"{kind} must hold a JSON object, got {type(data).__name__}")
    return data


class _DependsOn(TypedDict, total=False):
    nodes: list[str]


class _Time(TypedDict, total=False):
    count: int | None
    period: str | None


class _Freshness(TypedDict, total=False):
    warn_after: _Time | None
    error_after: _Time | None
    filter: str | None


class _Quoting(TypedDict, total=False):
    schema: bool | None
    identifier: bool | None


class _Config(TypedDict, total=False):
    materialized: str | None


class _SourceConfig(TypedDict, total=False):
    # dbt 1.10+ writes the merged values both here and at the top level of the source;
    # older manifests have them at the top level only.
    freshness: _Freshness | None
    loaded_at_field: str | None
    loaded_at_query: str | None


class _RawNode(TypedDict, total=False):
    unique_id: str
    resource_type: str
    name: str
    package_name: str | None
    original_file_path: str | None
    path: str | None
    fqn: list[str] | None
    tags: list[str] | None
    depends_on: _DependsOn | None
    database: str | None
    schema: str | None
    alias: str | None
    identifier: str | None
    source_name: str
    config: _Config | None
    relation_name: str | None
    attached_node: str | None


class _RawSource(TypedDict, total=False):
    # A separate record from _RawNode: models' configs are not decoded with source fields.
    unique_id: str
    resource_type: str
    name: str
    package_name: str | None
    original_file_path: str | None
    fqn: list[str] | None
    tags: list[str] | None
    database: str | None
    schema: str | None
    identifier: str | None
    source_name: str
    relation_name: str | None
    config: _SourceConfig | None
    loaded_at_field: str | None
    loaded_at_query: str | None
    freshness: _Freshness | None
    quoting: _Quoting | None


class _Metadata(TypedDict, total=False):
    dbt_schema_version: str | None
    dbt_version: str | None
    project_name: str | None


class _RawManifest(TypedDict, total=False):
    metadata: _Metadata | None
    nodes: dict[str, _RawNode]
    sources: dict[str, _RawSource] | None
    parent_map: dict[str, list[str]] | None
    child_map: dict[str, list[str]] | None


def _read_manifest_json(path: Path) -> dict[str, Any]:
    import msgspec

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DbtArtifactError(str(path), "manifest not found; run `dbt parse` (or `osds dbt-parse`) to create it") from None
    except OSError as exc:
        raise DbtArtifactError(str(path), f"cannot read manifest: {exc}") from exc
    try:
        return msgspec.json.decode(data, type=_RawManifest)  # type: ignore[return-value]
    except msgspec.ValidationError as exc:
        raise DbtArtifactError(str(path), f"not a dbt manifest: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DbtArtifactError(str(path), f"cannot read manifest: {exc}") from exc


def _check_schema(data: Mapping[str, Any], path: str, kind: str) -> str:
    """Return the artifact's schema URL, refusing another artifact kind passed by mistake."""
    schema = str((data.get("metadata") or {}).get("dbt_schema_version") or "")
    if schema and f"/{kind}/" not in schema:
        raise DbtArtifactError(path, f"expected a dbt {kind} artifact, got schema {schema}")
    return schema


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(value) if value else ()


# --------------------------------------------------------------------------------------------
# manifest.json
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestNode:
    """A model, seed, snapshot or data test of the manifest.

    :ivar identifier: the relation's table/view name (dbt's ``alias``, which defaults to the name).
    :ivar depends_on: unique ids of the nodes and sources this node reads (``depends_on.nodes``).
    :ivar attached_node: for a test, the model/seed/snapshot it is defined on (``None`` for
        singular tests that reference several models).
    """

    unique_id: str
    resource_type: str
    name: str
    package_name: str
    original_file_path: str
    path: str
    fqn: tuple[str, ...]
    tags: tuple[str, ...]
    depends_on: tuple[str, ...]
    database: str | None
    schema: str | None
    identifier: str
    materialized: str | None
    relation_name: str | None
    attached_node: str | None = None

    @property
    def is_ephemeral(self) -> bool:
        """Ephemeral models are inlined as CTEs into their children: nothing runs or is written."""
        return self.materialized == "ephemeral"

    @property
    def relation(self) -> tuple[str | None, str] | None:
        """``(schema, identifier)`` of the table/view this node writes, ``None`` if it writes none."""
        if self.resource_type == "test" or self.is_ephemeral:
            return None
        return (self.schema, self.identifier)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ManifestNode:
        config = d.get("config") or {}
        depends = d.get("depends_on") or {}
        return cls(
            unique_id=d["unique_id"],
            resource_type=d["resource_type"],
            name=d["name"],
            package_name=d.get("package_name") or "",
            original_file_path=d.get("original_file_path") or "",
            path=d.get("path") or "",
            fqn=_tuple(d.get("fqn")),
            tags=_tuple(d.get("tags")),
            depends_on=_tuple(depends.get("nodes")),
            database=d.get("database"),
            schema=d.get("schema"),
            identifier=d.get("alias") or d["name"],
            materialized=config.get("materialized"),
            relation_name=d.get("relation_name"),
            attached_node=d.get("attached_node"),
        )


@dataclass(frozen=True, slots=True)
class FreshnessTime:
    """One freshness threshold, as dbt defines it: ``{count: 12, period: hour}``.

    :ivar period: ``minute``, ``hour`` or ``day``.
    """

    count: int
    period: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> FreshnessTime | None:
        """``None`` when the threshold is unset (dbt writes ``{count: null, period: null}``)."""
        if not d or d.get("count") is None or d.get("period") is None:
            return None
        return cls(count=int(d["count"]), period=str(d["period"]))


@dataclass(frozen=True, slots=True)
class FreshnessThreshold:
    """A source table's freshness config, merged by dbt (table over source over project).

    :ivar filter: SQL condition dbt adds to the freshness query's ``WHERE``.
    """

    warn_after: FreshnessTime | None
    error_after: FreshnessTime | None
    filter: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> FreshnessThreshold | None:
        """``None`` when neither threshold is set: the table has no freshness to check."""
        if not d:
            return None
        warn, error = FreshnessTime.from_dict(d.get("warn_after")), FreshnessTime.from_dict(d.get("error_after"))
        if warn is None and error is None:
            return None
        return cls(warn_after=warn, error_after=error, filter=d.get("filter") or None)


@dataclass(frozen=True, slots=True)
class SourceNode:
    """A dbt source table (``source('source_name', 'name')``).

    :ivar loaded_at_field: the column (or SQL expression) dbt's freshness check takes ``max()`` of.
    :ivar loaded_at_query: dbt 1.10+'s alternative: a whole query returning the load time.
    :ivar freshness: the merged freshness thresholds; ``None`` when none is configured.
    :ivar quote_schema: whether dbt quotes the schema name (``quoting.schema``; ``None``: the
        adapter's default, which quotes on PostgreSQL).
    :ivar quote_identifier: the same for the table name (``quoting.identifier``).
    """

    unique_id: str
    source_name: str
    name: str
    package_name: str
    original_file_path: str
    fqn: tuple[str, ...]
    tags: tuple[str, ...]
    database: str | None
    schema: str | None
    identifier: str
    relation_name: str | None
    resource_type: str = "source"
    loaded_at_field: str | None = None
    loaded_at_query: str | None = None
    freshness: FreshnessThreshold | None = None
    quote_schema: bool | None = None
    quote_identifier: bool | None = None

    @property
    def relation(self) -> tuple[str | None, str]:
        return (self.schema, self.identifier)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceNode:
        config = d.get("config") or {}
        quoting = d.get("quoting") or {}
        # The top-level keys are what dbt's own freshness task reads; config is the fallback
        # for manifests that only carry it there.
        freshness = d["freshness"] if "freshness" in d else config.get("freshness")
        return cls(
            unique_id=d["unique_id"],
            source_name=d["source_name"],
            name=d["name"],
            package_name=d.get("package_name") or "",
            original_file_path=d.get("original_file_path") or "",
            fqn=_tuple(d.get("fqn")),
            tags=_tuple(d.get("tags")),
            database=d.get("database"),
            schema=d.get("schema"),
            identifier=d.get("identifier") or d["name"],
            relation_name=d.get("relation_name"),
            loaded_at_field=d.get("loaded_at_field") or config.get("loaded_at_field") or None,
            loaded_at_query=d.get("loaded_at_query") or config.get("loaded_at_query") or None,
            freshness=FreshnessThreshold.from_dict(freshness),
            quote_schema=quoting.get("schema"),
            quote_identifier=quoting.get("identifier"),
        )


@dataclass(frozen=True, eq=False)
class Manifest:
    """The parts of a dbt manifest that rendering and selection need.

    :ivar nodes: models, seeds, snapshots and tests by unique id, in manifest order.
    :ivar sources: sources by unique id.
    :ivar parent_map: dbt's ``parent_map`` when the manifest has one (empty otherwise).
    :ivar child_map: dbt's ``child_map`` when the manifest has one (empty otherwise).
    """

    nodes: Mapping[str, ManifestNode]
    sources: Mapping[str, SourceNode]
    project_name: str = ""
    dbt_version: str = ""
    schema_version: str = ""
    parent_map: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _EMPTY)
    child_map: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _EMPTY)
    path: str = "<dict>"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read and parse ``manifest.json``. Raises :class:`DbtArtifactError` if it is unusable.

        Only the fields below are decoded (msgspec skips the rest: SQL, docs, columns…), so
        a large project's manifest costs a fraction of ``json.load``'s memory and time.
        """
        p = Path(path)
        return cls.from_dict(_read_manifest_json(p), path=str(p))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str = "<dict>") -> Manifest:
        """Parse an already-loaded manifest dictionary."""
        schema = _check_schema(data, path, "manifest")
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, dict):
            raise DbtArtifactError(path, "manifest has no 'nodes' object; is this a dbt manifest.json?")
        try:
            nodes = {
                uid: ManifestNode.from_dict(n) for uid, n in raw_nodes.items() if n.get("resource_type") in NODE_TYPES
            }
            sources = {uid: SourceNode.from_dict(s) for uid, s in (data.get("sources") or {}).items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise DbtArtifactError(path, f"malformed manifest node ({type(exc).__name__}: {exc})") from exc
        metadata = data.get("metadata") or {}
        return cls(
            nodes=MappingProxyType(nodes),
            sources=MappingProxyType(sources),
            project_name=metadata.get("project_name") or "",
            dbt_version=metadata.get("dbt_version") or "",
            schema_version=schema,
            parent_map=MappingProxyType({k: tuple(v) for k, v in (data.get("parent_map") or {}).items()}),
            child_map=MappingProxyType({k: tuple(v) for k, v in (data.get("child_map") or {}).items()}),
            path=path,
        )

    def get(self, unique_id: str) -> ManifestNode | SourceNode | None:
        """The node or source with this unique id, or ``None``."""
        return self.nodes.get(unique_id) or self.sources.get(unique_id)

    @cached_property
    def tests_by_node(self) -> Mapping[str, tuple[str, ...]]:
        """Unique ids of the tests attached to each model/seed/snapshot (via ``attached_node``)."""
        tests: dict[str, list[str]] = {}
        for node in self.nodes.values():
            if node.resource_type == "test" and node.attached_node:
                tests.setdefault(node.attached_node, []).append(node.unique_id)
        return MappingProxyType({k: tuple(v) for k, v in tests.items()})

    @cached_property
    def children(self) -> Mapping[str, tuple[str, ...]]:
        """Direct children of every node and source, derived from ``depends_on`` (tests included).

        Computed rather than taken from ``child_map`` so hand-made or trimmed manifests work too.
        """
        children: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for parent in node.depends_on:
                children.setdefault(parent, []).append(node.unique_id)
        return MappingProxyType({k: tuple(v) for k, v in children.items()})

    def __len__(self) -> int:
        return len(self.nodes) + len(self.sources)


# --------------------------------------------------------------------------------------------
# Manifest cache
# --------------------------------------------------------------------------------------------

# One entry per manifest path: a changed file replaces its entry, so the cache cannot grow
# with every rebuild of the manifest in a long-lived DAG processor.
_cache: dict[str, tuple[int, int, Manifest]] = {}
_cache_lock = threading.Lock()
_cache_stats = {"hits": 0, "misses": 0}


def load_manifest(
    project_dir: str | os.PathLike[str], target_dir: str | os.PathLike[str] = "target"
) -> Manifest:
    """Return the parsed ``<project_dir>/<target_dir>/manifest.json``, cached in this process.

    The cache is keyed by the resolved path, ``st_mtime_ns`` and ``st_size``: a rewritten
    manifest is re-read on the next call, an unchanged one costs one ``stat``.

    :param project_dir: the dbt project directory.
    :param target_dir: dbt's target path, relative to ``project_dir`` unless absolute.
    """
    path = (Path(project_dir) / target_dir / "manifest.json").resolve()
    key = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DbtArtifactError(
            key, "manifest not found; run `osds dbt-parse <project>` (or `dbt parse`) to create it"
        ) from None
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
            _cache_stats["hits"] += 1
            return cached[2]
    # Parse outside the lock: a slow parse must not block other manifests; two threads racing
    # on the same file at worst parse it twice.
    manifest = Manifest.from_path(path)
    with _cache_lock:
        _cache[key] = (st.st_mtime_ns, st.st_size, manifest)
        _cache_stats["misses"] += 1
    return manifest


def clear_manifest_cache() -> None:
    """Forget every cached manifest and reset the hit/miss counters."""
    with _cache_lock:
        _cache.clear()
        _cache_stats.update(hits=0, misses=0)


def cache_info() -> dict[str, int]:
    """``{"hits": …, "misses": …, "size": …}`` of the manifest cache (for tests and diagnostics)."""
    with _cache_lock:
        return {**_cache_stats, "size": len(_cache)}


# --------------------------------------------------------------------------------------------
# run_results.json
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeResult:
    """The outcome of one node in a dbt invocation.

    :ivar status: dbt's status, lower case: ``success``, ``error``, ``skipped``, ``pass``,
        ``fail``, ``warn``, ``runtime error``, ``no-op``, ``partial success`` …
    :ivar failures: for tests, the number of failing rows (``None`` for other nodes).
    :ivar rows_affected: from the adapter response; ``None`` when absent or negative
        (PostgreSQL reports -1 for DDL such as ``CREATE VIEW``), and always ``None`` for tests,
        whose adapter response counts the one row of the test's ``count(*)`` query, not data.
    """

    unique_id: str
    status: str
    execution_time: float
    message: str | None
    failures: int | None
    rows_affected: int | None
    relation_name: str | None

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        """The node's name (for a source, ``source_name.table``), read from its unique id."""
        parts = self.unique_id.split(".")
        if parts[0] == "source":
            return ".".join(parts[2:])
        return parts[2] if len(parts) > 2 else self.unique_id

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], manifest: Manifest | None = None) -> NodeResult:
        adapter = d.get("adapter_response") or {}
        rows = adapter.get("rows_affected")
        relation = d.get("relation_name")
        if relation is None and manifest is not None:
            node = manifest.get(d["unique_id"])
            relation = node.relation_name if node is not None else None
        return cls(
            unique_id=d["unique_id"],
            status=str(d.get("status") or "").lower(),
            execution_time=float(d.get("execution_time") or 0.0),
            message=d.get("message"),
            failures=d.get("failures"),
            rows_affected=(
                rows
                if isinstance(rows, int) and rows >= 0 and not d["unique_id"].startswith(("test.", "unit_test."))
                else None
            ),
            relation_name=relation,
        )


@dataclass(frozen=True, eq=False)
class RunResults:
    """One dbt invocation's ``run_results.json``.

    :ivar command: the dbt sub-command (``build``, ``run``, ``test``, ``seed`` …) from ``args.which``.
    :ivar args: the invocation's arguments as dbt recorded them.
    """

    results: tuple[NodeResult, ...]
    elapsed_time: float
    command: str
    args: Mapping[str, Any]
    invocation_id: str
    dbt_version: str = ""
    generated_at: str = ""
    path: str = "<dict>"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, manifest: Manifest | None = None) -> RunResults:
        """Read ``run_results.json``; ``manifest`` fills in relation names the results lack."""
        p = Path(path)
        return cls.from_dict(_read_json(p, "run-results"), manifest=manifest, path=str(p))

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, manifest: Manifest | None = None, path: str = "<dict>"
    ) -> RunResults:
        _check_schema(data, path, "run-results")
        raw = data.get("results")
        if not isinstance(raw, list):
            raise DbtArtifactError(path, "run results have no 'results' list; is this a dbt run_results.json?")
        try:
            results = tuple(NodeResult.from_dict(r, manifest) for r in raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DbtArtifactError(path, f"malformed node result ({type(exc).__name__}: {exc})") from exc
        metadata = data.get("metadata") or {}
        args = data.get("args") or {}
        return cls(
            results=results,
            elapsed_time=float(data.get("elapsed_time") or 0.0),
            command=str(args.get("which") or ""),
            args=MappingProxyType(dict(args)),
            invocation_id=metadata.get("invocation_id") or "",
            dbt_version=metadata.get("dbt_version") or "",
            generated_at=metadata.get("generated_at") or "",
            path=path,
        )

    def __iter__(self) -> Iterator[NodeResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def by_id(self) -> dict[str, NodeResult]:
        return {r.unique_id: r for r in self.results}

    def failed(self) -> tuple[NodeResult, ...]:
        """Results whose status is in :data:`FAILED_STATUSES`, in run order."""
        return tuple(r for r in self.results if r.failed)

    def rows_by_node(self) -> dict[str, int]:
        """Rows affected per node, for nodes whose adapter reported a count."""
        return {r.unique_id: r.rows_affected for r in self.results if r.rows_affected is not None}

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts


def render_table(results: RunResults | Iterable[NodeResult]) -> str:
    """A fixed-width plain-text table of node results, for task logs.

    One line per node (status, seconds, rows, failures, node), then a summary line.
    """
    rows = list(results)
    header = ("status", "time", "rows", "failures", "node")
    lines = [
        (
            r.status,
            f"{r.execution_time:.2f}s",
            "-" if r.rows_affected is None else str(r.rows_affected),
            "-" if r.failures is None else str(r.failures),
            f"{r.resource_type} {r.name}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    # Numbers right-aligned, text left-aligned: easier to scan in a log viewer.
    right = (False, True, True, True, False)

    def fmt(cells: tuple[str, ...]) -> str:
        out = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(out).rstrip()

    table = [fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(line) for line in lines)]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    total = f"{len(rows)} node{'s' if len(rows) != 1 else ''}"
    if isinstance(results, RunResults):
        total += f" in {results.elapsed_time:.2f}s"
    table.append(f"{total}: {summary}" if summary else total)
    return "\n".join(table)
