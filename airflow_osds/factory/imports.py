"""Import user code named by dotted paths in pipeline files, and say precisely what is wrong with it."""

from __future__ import annotations

import functools
import importlib
import sys
import traceback
from typing import Any

__all__ = ["check_dotted", "import_dotted"]


def import_dotted(path: str) -> Any:
    """``package.module.name`` → the object; errors say which part is missing.

    Whatever importing the module raises (``SyntaxError``, ``NameError``, an ``ImportError``
    of its own imports…) becomes an ``ImportError`` naming the path and where it failed.
    """
    module_name, _, attr = path.rpartition(".")
    try:
        # A DAG names the same few modules in every step: skip import_module's machinery for those loaded.
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
    except Exception as exc:  # user code: any exception at import time is the path's problem
        raise ImportError(f"cannot import module `{module_name}` (from `{path}`): {_describe(exc)}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module `{module_name}` has no attribute `{attr}` (from `{path}`)") from None


@functools.cache  # a project names the same classes and callables in many steps
def check_dotted(path: str, must_be: str = "any") -> str | None:
    """Why ``path`` is unusable as a ``must_be`` ("callable", "class", "operator", "any"), or ``None``."""
    try:
        obj = import_dotted(path)
    except ImportError as exc:
        return str(exc)
    if must_be == "callable" and not callable(obj):
        return f"`{path}` is a {type(obj).__name__}, not a function: name a callable"
    if must_be in ("class", "operator") and not isinstance(obj, type):
        return f"`{path}` is a {type(obj).__name__}, not a class"
    if must_be == "operator":
        from airflow.sdk import BaseOperator

        if not issubclass(obj, BaseOperator):
            return f"`{path}` is not an Airflow operator (a subclass of airflow.sdk.BaseOperator)"
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
