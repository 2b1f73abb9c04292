"""Turn selected manifest nodes into an ordered graph of runnable nodes and groups of them.

Pure data: the Airflow layer maps each :class:`RenderedNode` or :class:`RenderedGroup` onto a
task. Ephemeral models and unselected nodes are not rendered; dependencies are connected
*through* them, so ``a → (ephemeral e) → b`` renders as ``a → b``.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from airflow_osds.dbt.artifacts import Manifest, ManifestNode
from airflow_osds.dbt.errors import DbtGraphError

__all__ = ["Granularity", "RenderedGroup", "RenderedNode", "group_nodes", "node_selector", "render_nodes"]

Granularity = Literal["model", "folder", "selector", "project"]
_RUNNABLE_TYPES = frozenset({"model", "seed", "snapshot"})


@dataclass(frozen=True, slots=True)
class RenderedNode:
    """One model, seed or snapshot to run, with its tests.

    :ivar kind: the dbt resource type (``model``, ``seed`` or ``snapshot``).
    :ivar relation: ``(schema, identifier)`` of the relation it writes.
    :ivar tests: unique ids of the selected tests to run after it.
    :ivar upstream: unique ids of the rendered nodes it must run after.
    :ivar selector: a dbt selector naming exactly this node, whatever package it is in (see
        :func:`node_selector`).
    """

    unique_id: str
    name: str
    kind: str
    relation: tuple[str | None, str] | None
    tests: tuple[str, ...]
    upstream: frozenset[str]
    original_file_path: str
    tags: tuple[str, ...]
    materialized: str | None
    selector: str


@dataclass(frozen=True, slots=True)
class RenderedGroup:
    """Nodes that run together (one task), e.g. all models of one folder.

    :ivar group_id: ``project``, a folder such as ``models/marts``, or a node's unique id.
    :ivar nodes: unique ids of its nodes, in dependency order.
    :ivar upstream: ids of the groups it must run after.
    """

    group_id: str
    nodes: tuple[str, ...]
    tests: tuple[str, ...]
    upstream: frozenset[str]
    selectors: tuple[str, ...]


def _toposort(ids: Collection[str], upstream: Mapping[str, Collection[str]], order: Mapping[str, int]) -> list[str]:
    """Kahn's algorithm; ties broken by ``order`` so the output is deterministic."""
    indegree = {uid: 0 for uid in ids}
    downstream: dict[str, list[str]] = {uid: [] for uid in ids}
    for uid in ids:
        for up in upstream[uid]:
            indegree[uid] += 1
            downstream[up].append(uid)
    ready = [(order[uid], uid) for uid, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, uid = heapq.heappop(ready)
        out.append(uid)
        for child in downstream[uid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, (order[child], child))
    if len(out) != len(indegree):
        stuck = sorted(uid for uid, d in indegree.items() if d > 0)
        raise DbtGraphError(f"dependency cycle among {', '.join(stuck[:10])}{' …' if len(stuck) > 10 else ''}")
    return out


def render_nodes(manifest: Manifest, selected: Collection[str]) -> dict[str, RenderedNode]:
    """Rendered nodes for the selected ids, in dependency order (the dict's order).

    :param selected: ids from :func:`airflow_osds.dbt.selection.select_nodes`; tests in it are
        attached to the node they test, other ids not in the manifest are ignored.
    """
    selected = set(selected)
    nodes = manifest.nodes
    rendered_ids = [
        uid
        for uid, n in nodes.items()
        if uid in selected and n.resource_type in _RUNNABLE_TYPES and not n.is_ephemeral
    ]
    rendered = set(rendered_ids)
    order = {uid: i for i, uid in enumerate(nodes)}

    # Nearest rendered ancestors of every node, memoised: O(nodes + edges) set unions instead
    # of one graph walk per rendered node, which matters for 1,000+ model projects.
    memo: dict[str, frozenset[str]] = {}

    def nearest(uid: str) -> frozenset[str]:
        # Iterative post-order DFS: deep model chains would overflow Python's recursion limit.
        stack = [uid]
        entered: set[str] = set()
        while stack:
            cur = stack[-1]
            if cur in memo:
                stack.pop()
                continue
            node = nodes.get(cur)
            parents = node.depends_on if node is not None else ()
            pending = [p for p in parents if p not in rendered and p not in memo and p in nodes]
            if pending and cur not in entered:
                entered.add(cur)
                stack.extend(pending)
                continue
            if pending:  # re-entered with parents still unresolved: they lead back here
                raise DbtGraphError(f"dependency cycle through {cur} and {', '.join(pending)}")
            acc: set[str] = set()
            for p in parents:
                if p in rendered:
                    acc.add(p)
                elif p in memo:
                    acc |= memo[p]
            memo[cur] = frozenset(acc)
            stack.pop()
        return memo[uid]

    upstream = {uid: nearest(uid) for uid in rendered_ids}
    topo = _toposort(rendered_ids, upstream, order)
    position = {uid: i for i, uid in enumerate(topo)}

    tests: dict[str, list[str]] = {uid: [] for uid in rendered_ids}
    for uid in selected:
        test = nodes.get(uid)
        if test is None or test.resource_type != "test":
            continue
        owner = _test_owner(test, rendered, position)
        if owner is not None:
            tests[owner].append(uid)

    result: dict[str, RenderedNode] = {}
    for uid in topo:
        n = nodes[uid]
        result[uid] = RenderedNode(
            unique_id=uid,
            name=n.name,
            kind=n.resource_type,
            relation=n.relation,
            tests=tuple(sorted(tests[uid])),
            upstream=upstream[uid],
            original_file_path=n.original_file_path,
            tags=n.tags,
            materialized=n.materialized,
            selector=node_selector(n),
        )
    return result


def node_selector(node: ManifestNode) -> str:
    """A dbt selector that matches exactly ``node``, in the root project or an installed package.

    ``path:`` resolves against the root project (a package's model matches nothing, or the
    root's file of the same path) and a bare name or ``fqn:`` also matches nodes in folders of
    that name, so three methods are intersected: the fully qualified name, the file name and
    the package.
    """
    fqn = ".".join(node.fqn) if node.fqn else f"{node.package_name}.{node.name}"
    file_name = PurePosixPath(node.original_file_path).name
    parts = [f"fqn:{fqn}"]
    if file_name:
        parts.append(f"file:{file_name}")
    if node.package_name:
        parts.append(f"package:{node.package_name}")
    return ",".join(parts)


def _test_owner(test: ManifestNode, rendered: set[str], position: Mapping[str, int]) -> str | None:
    """The rendered node a test runs after: its attached node, else its last-built parent.

    Tests on ephemeral or unselected nodes have no owner and are dropped: there is nothing
    built in this run for them to check.
    """
    if test.attached_node is not None:
        return test.attached_node if test.attached_node in rendered else None
    parents = [p for p in test.depends_on if p in rendered]
    return max(parents, key=position.__getitem__) if parents else None


def _folder_of(node: RenderedNode, depth: int) -> str:
    """``models/marts`` for ``models/marts/x.sql`` at depth 1; ``seeds`` for ``seeds/a.csv``."""
    parts = PurePosixPath(node.original_file_path).parent.parts
    return "/".join(parts[: 1 + depth]) or "."


def group_nodes(
    rendered: Mapping[str, RenderedNode],
    granularity: Granularity,
    *,
    folder_depth: int = 1,
    assignment: Mapping[str, str] | None = None,
) -> dict[str, RenderedGroup]:
    """Group rendered nodes into the units that become tasks, in dependency order.

    :param granularity: ``model`` (one group per node), ``folder`` (nodes grouped by the first
        ``folder_depth`` directories under their resource path, e.g. ``models/marts``) or
        ``project`` (everything in one group), or ``selector`` (the groups ``assignment`` gives:
        unique id → group name).
    :raises DbtGraphError: when folder groups depend on each other in a cycle (``a/x → b/y →
        a/z``); a deeper ``folder_depth`` or ``model`` granularity avoids it.
    """
    if granularity == "model":
        key = {uid: uid for uid in rendered}
    elif granularity == "folder":
        if folder_depth < 1:
            raise ValueError(f"folder_depth must be at least 1, got {folder_depth}")
        key = {uid: _folder_of(node, folder_depth) for uid, node in rendered.items()}
    elif granularity == "project":
        key = {uid: "project" for uid in rendered}
    elif granularity == "selector":
        missing = [uid for uid in rendered if uid not in (assignment or {})]
        if missing:
            raise DbtGraphError(f"nodes in no selector group: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
        key = {uid: (assignment or {})[uid] for uid in rendered}
    else:
        raise ValueError(f"granularity must be 'model', 'folder', 'selector' or 'project', got {granularity!r}")

    members: dict[str, list[str]] = {}
    for uid in rendered:  # rendered is in dependency order, so members are too
        members.setdefault(key[uid], []).append(uid)
    upstream = {
        gid: frozenset(key[up] for uid in uids for up in rendered[uid].upstream) - {gid}
        for gid, uids in members.items()
    }
    order = {gid: i for i, gid in enumerate(members)}
    try:
        topo = _toposort(list(members), upstream, order)
    except DbtGraphError as exc:
        fix = "regroup the selectors so dependencies run one way" if granularity == "selector" else (
            "use granularity 'model' or a larger folder_depth"
        )
        raise DbtGraphError(f"{granularity} groups depend on each other in a cycle ({exc}); {fix}") from None
    return {
        gid: RenderedGroup(
            group_id=gid,
            nodes=tuple(members[gid]),
            tests=tuple(t for uid in members[gid] for t in rendered[uid].tests),
            upstream=upstream[gid],
            selectors=tuple(rendered[uid].selector for uid in members[gid]),
        )
        for gid in topo
    }
