"""The provider modules the blocks contribute, derived from the registry, and the generated part of
``airflow_osds/get_provider_info.py`` that holds them.

``get_provider_info()`` runs in every Airflow process that loads providers — including each
DAG-file parse, at its first Asset — so it must not import the blocks' pydantic models
(~20 ms). As Airflow's own providers do with ``provider.yaml``, the derived lists are written
into ``get_provider_info.py`` by a command, and a test fails when they are out of date::

    python -m airflow_osds.factory.blocks._provider_info --write
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["BEGIN", "END", "derived_modules", "render"]

BEGIN = "# --- generated from the block registry by `python -m airflow_osds.factory.blocks._provider_info --write`; do not edit"
END = "# --- end of generated part"
_KINDS = ("operators", "sensors", "hooks", "triggers")
_TARGET = Path(__file__).resolve().parents[2] / "get_provider_info.py"


def derived_modules(blocks: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    """``integrations`` and ``operators``/``sensors``/``hooks``/``triggers`` groups, per integration."""
    integrations: dict[str, str] = {}
    groups: dict[str, dict[str, list[str]]] = {kind: {} for kind in _KINDS}
    for block in blocks:
        provides = block.provides
        if provides is None or block.package != "airflow-osds":
            continue
        integrations[provides.integration] = integrations.get(provides.integration) or provides.external_doc_url
        for kind, by_integration in groups.items():
            for module in getattr(provides, kind):
                modules = by_integration.setdefault(provides.integration, [])
                if module not in modules:
                    modules.append(module)
    out: dict[str, list[dict[str, Any]]] = {
        "integrations": [
            {"integration-name": name, **({"external-doc-url": url} if url else {})} for name, url in sorted(integrations.items())
        ]
    }
    for kind, by_integration in groups.items():
        out[kind] = [{"integration-name": name, "python-modules": sorted(mods)} for name, mods in sorted(by_integration.items())]
    return out


def render(modules: dict[str, Any]) -> str:
    # Only strings, lists and dicts: JSON is valid Python here, and reads better than pprint.
    return f"{BEGIN}\n_BLOCK_MODULES: dict[str, list[dict[str, Any]]] = {json.dumps(modules, indent=4)}\n{END}"


def _replace_generated(text: str, generated: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + generated + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the generated part of {_TARGET.name}")
    args = parser.parse_args(argv)
    from airflow_osds.factory.blocks import BLOCKS

    generated = render(derived_modules(BLOCKS.values()))
    if args.write:
        _TARGET.write_text(_replace_generated(_TARGET.read_text(), generated))
        print(f"wrote the generated part of {_TARGET}")
    else:
        print(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
