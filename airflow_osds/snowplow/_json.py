"""Compact JSON in and out, through msgspec when it is installed and the standard library otherwise.

msgspec is several times faster on the generator's and the loader's paths, but importing it costs
≈40 ms (it pulls typing_extensions), so it is imported on first use, never at module import:
the engine modules stay cheap to import. Both produce the same compact text for the plain
dict/list/str/int/float/bool/None values used here (key order kept, non-ASCII not escaped), and
both raise a ``ValueError`` for text that is not JSON (``msgspec.DecodeError`` is one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "loads"]

_loads: Callable[[str], Any] | None = None
_dumps: Callable[[Any], str] | None = None


def _bind() -> None:
    global _loads, _dumps
    try:
        import msgspec.json
    except ImportError:  # pragma: no cover - msgspec comes with Airflow
        import json

        _loads = json.JSONDecoder(parse_constant=_reject_constant).decode
        _dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
        return
    encode = msgspec.json.encode
    _loads = msgspec.json.decode
    _dumps = lambda value: encode(value).decode()  # noqa: E731 - one call on the hot path


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # like msgspec: NaN/Infinity are not JSON


def loads(text: str) -> Any:
    """Parse JSON text; raises ``ValueError`` when it is not JSON."""
    if _loads is None:
        _bind()
    assert _loads is not None
    return _loads(text)


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces, non-ASCII as is)."""
    if _dumps is None:
        _bind()
    assert _dumps is not None
    return _dumps(value)
