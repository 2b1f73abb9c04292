"""Pipeline YAML file → validated ``PipelineSpec``, with every problem located in the file."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_osds.exceptions import PipelineSpecError, SpecProblem
from airflow_osds.factory.spec import PipelineSpec
from airflow_osds.factory.yaml_source import locate, locate_key, read_yaml

__all__ = ["PIPELINE_SUFFIXES", "find_pipeline_files", "parse_pipeline_file"]

PIPELINE_SUFFIXES = (".yml", ".yaml")


def find_pipeline_files(folder: Path) -> list[Path]:
    """Pipeline files in ``folder`` and below, in a stable order; hidden files are skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix in PIPELINE_SUFFIXES and p.is_file() and not any(part.startswith(".") for part in p.parts)
    )


def parse_pipeline_file(path: Path) -> PipelineSpec:
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise PipelineSpecError(
            str(path),
            [SpecProblem("a pipeline file must be a mapping that starts with `pipeline: <id>`", line=1, column=1)],
        )
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise PipelineSpecError(str(path), [_problem(text, data, err) for err in exc.errors()]) from None


def _problem(text: str, data: Any, err: Any) -> SpecProblem:
    location = [part for part in err["loc"] if not _is_internal_loc(part)]
    dotted = ".".join(str(p) for p in location)
    if err["type"] == "extra_forbidden":
        key = str(location[-1])
        allowed = _allowed_keys(location[:-1], data)
        hint = difflib.get_close_matches(key, allowed, n=1)
        suggestion = f"did you mean `{hint[0]}`?" if hint else f"allowed keys: {', '.join(sorted(allowed))}"
        line, column = locate_key(text, location)
        return SpecProblem(f"unknown key `{key}`: {suggestion}", line=line, column=column, location=dotted)
    if err["type"] == "missing":
        line, column = locate(text, location[:-1])
        return SpecProblem(f"missing required key `{location[-1]}`", line=line, column=column, location=dotted)
    line, column = locate(text, location)
    message = err["msg"].removeprefix("Value error, ")
    return SpecProblem(message, line=line, column=column, location=dotted)


def _is_internal_loc(part: Any) -> bool:
    # pydantic adds validator names such as "function-before[...]" to locations.
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _allowed_keys(parent_location: list[Any], data: Any) -> list[str]:
    """Field names of the model found at ``parent_location``, walking the spec's type tree."""
    model: type[BaseModel] = PipelineSpec
    for part in parent_location:
        field = model.model_fields.get(str(part))
        if field is None:
            continue  # a dict key (step id) or list index: stay on the value's model
        annotation = field.annotation
        nested = _model_in(annotation)
        if nested is not None:
            model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
