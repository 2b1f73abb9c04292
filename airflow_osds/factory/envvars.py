"""Strict ``${NAME}`` / ``${NAME:-default}`` substitution in the string values of a loaded YAML document.

Substitution happens after YAML parsing, inside string values only, so an environment
variable can never change the document's structure. An undefined variable without a
default is an error, never left as literal text. ``$${`` writes a literal ``${``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["UndefinedVariable", "substitute_env"]

_REF = re.compile(r"\$\$\{|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$\{(?P<bad>[^}]*)\}?")


class UndefinedVariable:
    """An unresolvable reference at ``location`` (keys and list indexes)."""

    __slots__ = ("location", "name", "message")

    def __init__(self, location: tuple[Any, ...], name: str, message: str) -> None:
        self.location = location
        self.name = name
        self.message = message


def substitute_env(
    data: Any, environ: Mapping[str, str], referenced: set[str] | None = None
) -> tuple[Any, list[UndefinedVariable]]:
    """Return ``data`` with references replaced, and the references that could not be.

    The names of every variable referenced (set or not) are added to ``referenced``: the
    compiled cache must be recompiled when one of them changes.
    """
    problems: list[UndefinedVariable] = []
    tracking = _Tracking(environ, referenced if referenced is not None else set())
    return _walk(data, (), tracking, problems), problems


class _Tracking(Mapping[str, str]):
    """``environ`` that remembers which names were looked up."""

    def __init__(self, environ: Mapping[str, str], referenced: set[str]) -> None:
        self._environ = environ
        self.referenced = referenced

    def __getitem__(self, name: str) -> str:
        self.referenced.add(name)
        return self._environ[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.referenced.add(name)
        return name in self._environ

    def __iter__(self) -> Any:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def _walk(value: Any, location: tuple[Any, ...], environ: Mapping[str, str], problems: list[UndefinedVariable]) -> Any:
    if isinstance(value, str):
        return _substitute(value, location, environ, problems) if "${" in value else value
    if isinstance(value, dict):
        return {k: _walk(v, (*location, k), environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, (*location, i), environ, problems) for i, v in enumerate(value)]
    return value


def _substitute(text: str, location: tuple[Any, ...], environ: Mapping[str, str], problems: list[UndefinedVariable]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group() == "$${":
            return "${"
        if match.group("bad") is not None:
            problems.append(UndefinedVariable(location, match.group("bad"), f"`{match.group()}` is not a valid reference: write ${{NAME}} or ${{NAME:-default}}"))
            return match.group()
        name = match.group("name")
        if name in environ:
            return environ[name]
        if match.group("default") is not None:
            return match.group("default")
        problems.append(
            UndefinedVariable(location, name, f"environment variable `{name}` is not set: set it or write ${{{name}:-default}}")
        )
        return match.group()

    return _REF.sub(replace, text)
