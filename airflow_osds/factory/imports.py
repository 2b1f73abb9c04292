"""Import user code named by dotted paths in pipeline files."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_dotted"]


def import_dotted(path: str) -> Any:
    """``package.module.name`` → the object; errors say which part is missing."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module `{module_name}` (from `{path}`): {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module `{module_name}` has no attribute `{attr}` (from `{path}`)") from None
