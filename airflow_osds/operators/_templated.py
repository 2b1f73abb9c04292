"""Values of templated operator arguments after Airflow rendered them."""

from __future__ import annotations

__all__ = ["rendered_flag"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off", "none"})


def rendered_flag(value: bool | str | None, *, name: str = "flag") -> bool:
    """A boolean argument that may be a template (``"{{ params.full_refresh }}"`` renders to ``"True"``).

    :raises ValueError: the rendered text is neither true nor false (a typo must not read as ``False``).
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} rendered to {value!r}, which is neither true nor false (write true/false, yes/no or 1/0)")
