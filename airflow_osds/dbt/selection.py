"""A subset of dbt's node selection syntax, evaluated over a :class:`~airflow_osds.dbt.artifacts.Manifest`.

Evaluating selectors ourselves (instead of running ``dbt ls`` at DAG-parse time, as Cosmos'
``DBT_LS`` load mode does) keeps parsing at milliseconds and needs neither dbt nor a profile.

Supported, following dbt's semantics:

* union: several selectors (a list, or one string separated by spaces);
* intersection: ``tag:daily,path:models/marts`` (comma, no spaces);
* methods: ``fqn:`` (the default for a bare name: ``orders``, ``shop.marts``, ``stg_*``),
  ``path:`` (a directory or file relative to the project; bare values containing ``/`` too),
  ``file:`` (file name or stem; bare ``orders.sql`` too), ``tag:``, ``source:``
  (``snowplow``, ``snowplow.events``, ``package.snowplow.events``), ``resource_type:``,
  ``package:``, ``config.materialized:``; values may use shell wildcards (``*``, ``?``);
  ``state:`` (``state:modified``…) is accepted and matches every node: which ones changed is
  known only when dbt runs (see :mod:`airflow_osds.dbt.state`);
* graph operators: ``+x`` (ancestors), ``x+`` (descendants), ``2+x`` / ``x+1`` (depth
  limits), ``@x`` (descendants and all their ancestors);
* ``exclude``: the same syntax, removed from the result.

The result holds models, seeds, snapshots and tests. Tests are not reached through graph
operators; they *follow* the nodes they are attached to (``attached_node``): a test is selected
when its model is (tests without an attached node when all of their parents are), or when a
selector names the test itself; excluding a node excludes its tests. Sources can be selected (``source:snowplow+``) but are never
part of the result: they are not run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from airflow_osds.dbt.artifacts import Manifest, ManifestNode, SourceNode
from airflow_osds.dbt.errors import DbtSelectionError

__all__ = ["SUPPORTED_METHODS", "SelectorAtom", "SelectorTerm", "parse_selectors", "select_nodes"]

SUPPORTED_METHODS = ("fqn", "path", "file", "tag", "source", "resource_type", "package", "config.materialized", "state")
_SUPPORTED_TEXT = (
    "supported: methods " + ", ".join(f"{m}:" for m in SUPPORTED_METHODS) + " (a bare name means fqn:, "
    "a bare value with '/' means path:), graph operators +x, x+, N+x, x+N, @x, "
    "intersection with ',' and union with spaces or a list"
)
_RESULT_TYPES = frozenset({"model", "seed", "snapshot", "test"})
_RUNNABLE_TYPES = frozenset({"model", "seed", "snapshot"})
_FILE_SUFFIXES = (".sql", ".py", ".csv", ".yml", ".yaml")

# The same shape as dbt's own RAW_SELECTOR_PATTERN (dbt/graph/selector_spec.py).
_ATOM = re.compile(
    r"\A(?P<at>@)?"
    r"(?P<parents>(?P<parents_depth>\d*)\+)?"
    r"(?:(?P<method>[\w.]+):)?(?P<value>.*?)"
    r"(?P<children>\+(?P<children_depth>\d*))?\Z"
)

Node = ManifestNode | SourceNode


@dataclass(frozen=True, slots=True)
class SelectorAtom:
    """One ``[@][N+]method:value[+N]`` selector.

    :ivar parents_depth: ``None`` for no ancestors, ``-1`` for all, else the depth limit.
    :ivar children_depth: the same for descendants.
    """

    text: str
    method: str
    value: str
    parents_depth: int | None = None
    children_depth: int | None = None
    childrens_parents: bool = False


@dataclass(frozen=True, slots=True)
class SelectorTerm:
    """Atoms joined by commas: a node must match all of them (intersection)."""

    text: str
    atoms: tuple[SelectorAtom, ...]


def _default_method(value: str) -> str:
    # dbt's rule of thumb (dbt/graph/selector_spec.py): path-looking values select by path,
    # file-looking values by file name, anything else by fully qualified name.
    if "/" in value or "\\" in value:
        return "path"
    if value.lower().endswith(_FILE_SUFFIXES):
        return "file"
    return "fqn"


def _parse_atom(text: str, term: str) -> SelectorAtom:
    m = _ATOM.match(text)
    value = m.group("value") if m else ""
    if m is None or not value or "+" in value or "@" in value:
        raise DbtSelectionError(term, f"cannot parse {text!r}; {_SUPPORTED_TEXT}")
    if m.group("at") and m.group("parents"):
        raise DbtSelectionError(term, f"{text!r} combines '@' with a leading '+', which dbt does not allow")
    method = m.group("method") or _default_method(value)
    if method not in SUPPORTED_METHODS:
        raise DbtSelectionError(term, f"selector method {method + ':'!r} is not supported; {_SUPPORTED_TEXT}")

    def depth(marker: str | None, digits: str | None) -> int | None:
        if marker is None:
            return None
        return int(digits) if digits else -1

    return SelectorAtom(
        text=text,
        method=method,
        value=value.rstrip("/") if method == "path" else value,
        parents_depth=depth(m.group("parents"), m.group("parents_depth")),
        children_depth=depth(m.group("children"), m.group("children_depth")),
        childrens_parents=bool(m.group("at")),
    )


def parse_selectors(selectors: str | Iterable[str] | None) -> tuple[SelectorTerm, ...]:
    """Parse selectors without a manifest (for validating pipeline files early).

    :param selectors: one string (terms separated by spaces) or a list of them; ``None`` → ``()``.
    :raises DbtSelectionError: naming the offending selector and the supported syntax.
    """
    if selectors is None:
        return ()
    items = [selectors] if isinstance(selectors, str) else list(selectors)
    terms: list[SelectorTerm] = []
    for item in items:
        if not isinstance(item, str):
            raise DbtSelectionError(repr(item), "selectors must be strings")
        for term in item.split():
            parts = term.split(",")
            if any(not p for p in parts):
                raise DbtSelectionError(term, "empty selector around ','; write 'a,b' with no spaces")
            terms.append(SelectorTerm(text=term, atoms=tuple(_parse_atom(p, term) for p in parts)))
    return tuple(terms)


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------


def _fqn_matches(fqn: Sequence[str], pattern: str) -> bool:
    if not fqn:
        return False
    if fnmatchcase(fqn[-1], pattern):
        return True
    # Dots in names act as namespace separators, as in dbt's FQNSelectorMethod.
    flat = [part for segment in fqn for part in segment.split(".")]
    wanted = pattern.split(".")
    if len(wanted) > len(flat):
        return False
    return all(fnmatchcase(have, want) for have, want in zip(flat, wanted))


def _path_matches(original_file_path: str, pattern: str) -> bool:
    path = original_file_path.replace("\\", "/")
    pattern = pattern.removeprefix("./")
    if path == pattern or path.startswith(pattern + "/"):
        return True
    # A glob ("models/*/orders.sql") matches the file or any directory above it.
    if any(c in pattern for c in "*?["):
        pure = PurePosixPath(path)
        return any(fnmatchcase(str(p), pattern) for p in (pure, *pure.parents))
    return False


def _source_matches(node: SourceNode, pattern: str) -> bool:
    parts = pattern.split(".")
    if len(parts) == 1:
        have = [node.source_name]
    elif len(parts) == 2:
        have = [node.source_name, node.name]
    elif len(parts) == 3:
        have = [node.package_name, node.source_name, node.name]
    else:
        return False
    return all(fnmatchcase(h, p) for h, p in zip(have, parts))


def _atom_matches(node: Node, atom: SelectorAtom) -> bool:
    method, value = atom.method, atom.value
    if method == "fqn":
        return isinstance(node, ManifestNode) and _fqn_matches(node.fqn, value)
    if method == "path":
        return _path_matches(node.original_file_path, value)
    if method == "file":
        name = PurePosixPath(node.original_file_path).name
        return fnmatchcase(name, value) or fnmatchcase(PurePosixPath(name).stem, value)
    if method == "tag":
        return any(fnmatchcase(tag, value) for tag in node.tags)
    if method == "source":
        return isinstance(node, SourceNode) and _source_matches(node, value)
    if method == "resource_type":
        return node.resource_type == value
    if method == "package":
        return fnmatchcase(node.package_name, value)
    if method == "config.materialized":
        return isinstance(node, ManifestNode) and node.materialized == value
    if method == "state":
        # What changed since the stored state is known only when dbt runs (airflow_osds.dbt.state):
        # at parse time every node may be selected.
        return isinstance(node, ManifestNode)
    raise AssertionError(f"unhandled selector method {method}")  # parse_selectors rejects others


def _walk(manifest: Manifest, start: Iterable[str], depth: int, *, up: bool) -> set[str]:
    """Ancestors (``up``) or descendants of ``start``, not including tests, within ``depth`` (-1: all)."""
    seen: set[str] = set()
    frontier = list(start)
    level = 0
    while frontier and (depth < 0 or level < depth):
        level += 1
        nxt: list[str] = []
        for uid in frontier:
            if up:
                node = manifest.nodes.get(uid)
                neighbours: Iterable[str] = node.depends_on if node is not None else ()
            else:
                neighbours = manifest.children.get(uid, ())
            for n in neighbours:
                if n not in seen and not n.startswith("test."):
                    seen.add(n)
                    nxt.append(n)
        frontier = nxt
    return seen


def _resolve_atom(manifest: Manifest, atom: SelectorAtom, universe: Sequence[Node]) -> set[str]:
    matched = {n.unique_id for n in universe if _atom_matches(n, atom)}
    graph_start = {uid for uid in matched if not uid.startswith("test.")}
    result = set(matched)
    if atom.childrens_parents:
        descendants = graph_start | _walk(manifest, graph_start, -1, up=False)
        result |= descendants | _walk(manifest, descendants, -1, up=True)
    if atom.parents_depth is not None:
        result |= _walk(manifest, graph_start, atom.parents_depth, up=True)
    if atom.children_depth is not None:
        result |= _walk(manifest, graph_start, atom.children_depth, up=False)
    return result


def _resolve_terms(manifest: Manifest, terms: Sequence[SelectorTerm], universe: Sequence[Node], *, strict: bool) -> set[str]:
    selected: set[str] = set()
    for term in terms:
        hits: set[str] | None = None
        for atom in term.atoms:
            found = _resolve_atom(manifest, atom, universe)
            hits = found if hits is None else hits & found
        assert hits is not None  # a term has at least one atom
        if strict and not (hits & _selectable(manifest)):
            raise DbtSelectionError(term.text, "matches no model, seed, snapshot or test" + _suggest(manifest, term))
        selected |= hits
    return selected


def _selectable(manifest: Manifest) -> set[str]:
    return {uid for uid, n in manifest.nodes.items() if n.resource_type in _RESULT_TYPES}


def _suggest(manifest: Manifest, term: SelectorTerm) -> str:
    """A did-you-mean hint for the first atom, from the values its method could have matched."""
    atom = term.atoms[0]
    nodes = manifest.nodes.values()
    candidates: set[str]
    if atom.method == "tag":
        candidates = {t for n in (*nodes, *manifest.sources.values()) for t in n.tags}
    elif atom.method == "path":
        candidates = {str(p) for n in nodes for p in PurePosixPath(n.original_file_path).parents if str(p) != "."}
        candidates |= {n.original_file_path for n in nodes}
    elif atom.method == "source":
        candidates = {f"{s.source_name}.{s.name}" for s in manifest.sources.values()}
        candidates |= {s.source_name for s in manifest.sources.values()}
    elif atom.method in ("fqn", "file"):
        candidates = {n.name for n in nodes if n.resource_type in _RUNNABLE_TYPES}
    else:
        return ""
    import difflib  # only on the error path: keeps module import cheap

    close = difflib.get_close_matches(atom.value, sorted(candidates), n=3)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def select_nodes(
    manifest: Manifest,
    select: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    *,
    strict: bool = True,
) -> frozenset[str]:
    """Unique ids of the models, seeds, snapshots and tests that ``select`` minus ``exclude`` picks.

    :param select: selectors (union); ``None`` or empty selects every node, as dbt does.
    :param exclude: selectors removed from the selection.
    :param strict: raise when a ``select`` term matches nothing — usually a typo that would
        otherwise silently render an empty DAG (dbt itself only warns).
    :raises DbtSelectionError: for unsupported syntax, or (``strict``) a term matching nothing.
    """
    select_terms = parse_selectors(select)
    exclude_terms = parse_selectors(exclude)
    universe: list[Node] = [*manifest.nodes.values(), *manifest.sources.values()]

    if select_terms:
        chosen = _resolve_terms(manifest, select_terms, universe, strict=strict)
    else:
        chosen = {uid for uid, n in manifest.nodes.items() if n.resource_type in _RUNNABLE_TYPES}
    excluded = _resolve_terms(manifest, exclude_terms, universe, strict=False) if exclude_terms else set()
    if excluded:
        # As in dbt, excluding a node excludes its tests too, even ones a select term named
        # directly (e.g. through the path of the schema.yml defining them).
        excluded |= {
            uid
            for uid, n in manifest.nodes.items()
            if n.resource_type == "test"
            and (n.attached_node in excluded if n.attached_node else any(p in excluded for p in n.depends_on))
        }

    runnable = {
        uid for uid in chosen - excluded if (n := manifest.nodes.get(uid)) is not None and n.resource_type in _RUNNABLE_TYPES
    }
    tests = {uid for uid in chosen - excluded if uid in manifest.nodes and manifest.nodes[uid].resource_type == "test"}
    # Tests follow the nodes they test.
    for node in manifest.nodes.values():
        if node.resource_type != "test" or node.unique_id in excluded:
            continue
        if node.attached_node is not None:
            follows = node.attached_node in runnable
        else:
            parents = [p for p in node.depends_on if not p.startswith("source.")]
            follows = bool(parents) and all(p in runnable for p in parents)
        if follows:
            tests.add(node.unique_id)
    return frozenset(runnable | tests)
