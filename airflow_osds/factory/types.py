"""Value types shared by the pipeline models: durations, dotted paths, callbacks."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = ["steps_mapped_from", "CallbackSpec", "DottedPath", "Duration", "FromStep", "Identifier", "NotifierSpec", "Strict", "parse_duration"]

IDENTIFIER_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


class Strict(BaseModel):
    """Base of every model of the language: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: Any) -> Any:
    """``90`` (seconds), ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``; ISO 8601 passes through to pydantic."""
    if isinstance(value, str) and not value.upper().startswith("P"):
        match = _DURATION.match(value)
        if not match or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration: write e.g. 30s, 15m, 1h30m, 2d or seconds as a number")
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration, json_schema_input_type=str | int | float)]
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
DottedPath = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$",
        description="Importable dotted path, `package.module.name`.",
        examples=["my_company.callbacks.notify_slack"],
    ),
]


class NotifierSpec(Strict):
    """An Airflow notifier class instantiated with arguments, e.g. a Slack or SMTP notifier."""

    notifier: DottedPath = Field(description="Notifier class (a BaseNotifier subclass).")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the notifier.")


CallbackSpec = DottedPath | NotifierSpec


class FromStep(Strict):
    """The output (XCom return value) of another step, for dynamic task mapping."""

    from_: str = Field(alias="from", description="Step id whose returned list is mapped over.")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def steps_mapped_from(expand: dict[str, Any]) -> list[str]:
    """Step ids whose output an ``expand`` mapping maps over (they must run first)."""
    return [value.from_ for value in expand.values() if isinstance(value, FromStep)]
