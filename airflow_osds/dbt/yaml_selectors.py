"""dbt's YAML selectors (``selectors.yml``), evaluated over a manifest like ``dbt ls --selector``.

A selector's ``definition`` is a CLI string (``"tag:nightly+"``), a method mapping
(``{method: tag, value: nightly, children: true, parents_depth: 1}``), a ``union`` or an
``intersection`` of definitions (either may hold ``{exclude: [...]}`` entries, removed from
its result), or another selector (``{method: selector, value: other}``). A selector marked
``default: true`` is what dbt runs when a command names no selection, so rendering uses it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_osds.dbt.artifacts import Manifest
from airflow_osds.dbt.errors import DbtSelectionError
from airflow_osds.dbt.selection import select_nodes

__all__ = ["YamlSelector", "default_selector", "load_selectors", "resolve_selector"]

_GRAPH_KEYS = frozenset({"method", "value", "parents", "parents_depth", "children", "children_depth",
                         "childrens_parents", "indirect_selection", "description"})


@dataclass(frozen=True)
class YamlSelector:
    name: str
    definition: Any
    default: bool = False


def load_selectors(project_dir: str | Path) -> dict[str, YamlSelector]:
    """The project's ``selectors.yml`` (``{}`` when it has none).

    :raises DbtSelectionError: when the file is not the shape dbt accepts.
    """
    import yaml

    path = Path(project_dir) / "selectors.yml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DbtSelectionError(str(path), f"cannot read selectors.yml: {exc}") from None
    entries = data.get("selectors") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise DbtSelectionError(str(path), "selectors.yml must hold `selectors:`, a list of {name, definition}")
    selectors: dict[str, YamlSelector] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry or "definition" not in entry:
            raise DbtSelectionError(str(path), f"each selector needs `name` and `definition`, got {entry!r}")
        selectors[str(entry["name"])] = YamlSelector(str(entry["name"]), entry["definition"], bool(entry.get("default")))
    return selectors


def default_selector(selectors: Mapping[str, YamlSelector]) -> YamlSelector | None:
    defaults = [s for s in selectors.values() if s.default]
    if len(defaults) > 1:
        raise DbtSelectionError(", ".join(s.name for s in defaults), "only one selector may be `default: true`")
    return defaults[0] if defaults else None


def resolve_selector(manifest: Manifest, name: str, selectors: Mapping[str, YamlSelector]) -> frozenset[str]:
    """Unique ids ``dbt ls --selector name`` lists (models, seeds, snapshots and their tests)."""
    if name not in selectors:
        known = ", ".join(sorted(selectors)) or "none (the project has no selectors.yml)"
        raise DbtSelectionError(name, f"no such YAML selector; the project's selectors: {known}")
    return frozenset(_evaluate(manifest, selectors[name].definition, selectors, (name,)))


def _evaluate(manifest: Manifest, definition: Any, selectors: Mapping[str, YamlSelector], chain: tuple[str, ...]) -> set[str]:
    if isinstance(definition, str):
        return set(select_nodes(manifest, [definition], strict=False))
    if not isinstance(definition, dict) or len(definition) == 0:
        raise DbtSelectionError(chain[0], f"cannot read the definition {definition!r}")
    for operator in ("union", "intersection"):
        if operator in definition:
            return _combine(manifest, operator, definition[operator], selectors, chain)
    if "method" in definition:
        return _method(manifest, definition, selectors, chain)
    raise DbtSelectionError(chain[0], f"a definition is a string, `union`, `intersection` or `method`, got {definition!r}")


def _combine(manifest: Manifest, operator: str, items: Any, selectors: Mapping[str, YamlSelector],
             chain: tuple[str, ...]) -> set[str]:
    if not isinstance(items, list) or not items:
        raise DbtSelectionError(chain[0], f"`{operator}` takes a non-empty list")
    included = [i for i in items if not (isinstance(i, dict) and set(i) == {"exclude"})]
    excluded = [i["exclude"] for i in items if isinstance(i, dict) and set(i) == {"exclude"}]
    sets = [_evaluate(manifest, item, selectors, chain) for item in included]
    result = set().union(*sets) if operator == "union" else set.intersection(*sets) if sets else set()
    for exclusion in excluded:
        for item in exclusion if isinstance(exclusion, list) else [exclusion]:
            result -= _with_tests(manifest, _evaluate(manifest, item, selectors, chain))
    return result


def _method(manifest: Manifest, d: dict[str, Any], selectors: Mapping[str, YamlSelector], chain: tuple[str, ...]) -> set[str]:
    unknown = sorted(set(d) - _GRAPH_KEYS)
    if unknown:
        raise DbtSelectionError(chain[0], f"unknown key(s) {', '.join(unknown)} in {d!r}")
    method, value = str(d["method"]), str(d.get("value", ""))
    if method == "selector":
        if value in chain:
            raise DbtSelectionError(chain[0], f"selectors refer to each other in a loop: {' → '.join((*chain, value))}")
        if value not in selectors:
            raise DbtSelectionError(chain[0], f"refers to selector `{value}`, which selectors.yml does not define")
        return _evaluate(manifest, selectors[value].definition, selectors, (*chain, value))
    text = f"{method}:{value}"
    if d.get("childrens_parents"):
        text = "@" + text
    if d.get("parents") or "parents_depth" in d:
        text = f"{d.get('parents_depth', '')}+{text}"
    if d.get("children") or "children_depth" in d:
        text = f"{text}+{d.get('children_depth', '')}"
    return set(select_nodes(manifest, [text], strict=False))


def _with_tests(manifest: Manifest, ids: set[str]) -> set[str]:
    """``ids`` plus the tests of its nodes: excluding a node excludes its tests, as in dbt."""
    return ids | {
        uid for uid, n in manifest.nodes.items()
        if n.resource_type == "test" and (n.attached_node in ids if n.attached_node else any(p in ids for p in n.depends_on))
    }
