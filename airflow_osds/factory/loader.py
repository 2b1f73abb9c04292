"""Pipeline YAML files → validated ``PipelineSpec``s, every problem located in its file.

Reading order for one pipeline file: the ``defaults.yml`` files of its folder and the
folders above it (up to the root that was scanned, nearest last), then the file itself;
``${ENV}`` references are substituted in each, then the merged document is validated.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_osds.exceptions import PipelineSpecError, SpecProblem
from airflow_osds.factory.blocks import BLOCK_LOAD_ERRORS
from airflow_osds.factory.envvars import substitute_env
from airflow_osds.factory.spec import FolderDefaults, LazyBlock, PipelineSpec
from airflow_osds.factory.yaml_source import Locator, locate, locate_key, read_yaml

__all__ = [
    "DEFAULTS_FILE_NAMES",
    "PIPELINE_SUFFIXES",
    "ParsedPipeline",
    "find_pipeline_files",
    "parse_pipeline_file",
]

PIPELINE_SUFFIXES = (".yml", ".yaml")
DEFAULTS_FILE_NAMES = ("defaults.yml", "defaults.yaml")
_UNION_KEYS = ("tags", "owners")
_MERGED_MAPPINGS = ("defaults", "callbacks")


@dataclass(frozen=True)
class ParsedPipeline:
    """A valid pipeline file: its path, text (for locating later problems) and spec."""

    path: Path
    text: str
    spec: PipelineSpec
    env_names: frozenset[str] = frozenset()  # environment variables it (or its defaults) references

    @cached_property
    def folder(self) -> Path:
        """The file's folder, which its relative paths start from (asked once per step)."""
        return self.path.parent

    @cached_property
    def locator(self) -> Locator:
        return Locator(self.text)

    def problem(self, message: str, location: tuple[Any, ...] = (), *, key: bool = False) -> SpecProblem:
        line, column = (self.locator.locate_key if key else self.locator.locate)(list(location))
        return SpecProblem(message, line=line, column=column, location=".".join(map(str, location)))


@dataclass
class DefaultsCache:
    """Folder defaults already read while loading one folder (each file is read once)."""

    by_path: dict[Path, tuple[dict[str, Any], frozenset[str]]] = field(default_factory=dict)


def find_pipeline_files(folder: Path) -> list[Path]:
    """Pipeline files under ``folder`` in a stable order.

    Skipped: hidden paths, defaults files, and dbt projects kept beside the pipelines (a
    folder holding a ``dbt_project.yml``: its YAML files are dbt's, not pipelines).
    """
    if folder.is_file():
        return [folder]
    found = []
    for directory, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (Path(directory) / d / "dbt_project.yml").is_file()
        )
        found.extend(
            Path(directory) / name
            for name in filenames
            if Path(name).suffix in PIPELINE_SUFFIXES and name not in DEFAULTS_FILE_NAMES and not name.startswith(".")
        )
    return sorted(found)


def parse_pipeline_file(
    path: Path,
    *,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cache: DefaultsCache | None = None,
    env_names: set[str] | None = None,
) -> ParsedPipeline:
    """Read, merge with folder defaults, substitute environment variables and validate one file.

    :param env_names: collects the environment variables referenced, even when the file
        turns out invalid (setting one of them may fix it).
    """
    environ = os.environ if environ is None else environ
    cache = cache or DefaultsCache()
    merged: dict[str, Any] = {}
    env_names = set() if env_names is None else env_names
    for defaults_path in _defaults_chain(path, root):
        if defaults_path not in cache.by_path:
            cache.by_path[defaults_path] = _read_defaults(defaults_path, environ, env_names)
        defaults, names = cache.by_path[defaults_path]
        merged = _merge(merged, defaults)
        env_names |= names
    text, data = _read_document(
        path, environ, "a pipeline file must be a mapping that starts with `pipeline: <id>`", env_names
    )
    try:
        spec = PipelineSpec.model_validate(_merge(merged, data))
    except ValidationError as exc:
        raise PipelineSpecError(str(path), validation_problems(text, data, exc, PipelineSpec)) from None
    return ParsedPipeline(path=path, text=text, spec=spec, env_names=frozenset(env_names))


def _read_defaults(path: Path, environ: Mapping[str, str], seen: set[str]) -> tuple[dict[str, Any], frozenset[str]]:
    names: set[str] = set()
    try:
        text, data = _read_document(path, environ, "a defaults file must be a mapping, e.g. `defaults: {retries: 2}`", names)
    finally:
        seen |= names
    try:
        FolderDefaults.model_validate(data)
    except ValidationError as exc:
        raise PipelineSpecError(str(path), validation_problems(text, data, exc, FolderDefaults)) from None
    return data, frozenset(names)


def _read_document(
    path: Path, environ: Mapping[str, str], not_a_mapping: str, env_names: set[str]
) -> tuple[str, dict[str, Any]]:
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise PipelineSpecError(str(path), [SpecProblem(not_a_mapping, line=1, column=1)])
    if "${" not in text and "\\" not in text:
        # No value can hold a reference: only a backslash escape ("\\x24{", an escaped line break)
        # could make `${` appear in a scalar without being in the text.
        return text, data
    data, undefined = substitute_env(data, environ, env_names)
    if undefined:
        problems = []
        for ref in undefined:
            line, column = locate(text, list(ref.location))
            problems.append(SpecProblem(ref.message, line=line, column=column, location=".".join(map(str, ref.location))))
        raise PipelineSpecError(str(path), problems)
    return text, data


def _defaults_chain(path: Path, root: Path | None) -> list[Path]:
    """Defaults files from ``root`` (or the file's folder) down to the file's folder."""
    folder = path.parent.resolve()
    top = (root if root is not None and root.is_dir() else folder).resolve()
    folders = [folder]
    while folders[-1] != top and top in folders[-1].parents:
        folders.append(folders[-1].parent)
    chain = []
    for directory in reversed(folders):
        chain.extend(directory / name for name in DEFAULTS_FILE_NAMES if (directory / name).is_file())
    return chain


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key in _UNION_KEYS and isinstance(value, list) and isinstance(base.get(key), list):
            merged[key] = [*base[key], *(v for v in value if v not in base[key])]
        elif key in _MERGED_MAPPINGS and isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


# -- turning pydantic errors into located problems ---------------------------------------------
def validation_problems(text: str, data: Any, exc: ValidationError, model: type[BaseModel]) -> list[SpecProblem]:
    """One problem per location; alternatives of a union at one location are joined with "or"."""
    by_location: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    located = [(_data_location(err["loc"], data), err) for err in exc.errors()]
    for location, err in located:
        if _wrong_union_branch(err) and any(
            other is not err and loc[: len(location)] == location and not _wrong_union_branch(other) for loc, other in located
        ):
            continue  # e.g. "should be a string" for a mapping that a union's model branch explains better
        by_location.setdefault(location, []).append(err)
    problems = []
    for location, errors in by_location.items():
        problems.append(_problem(text, data, list(location), errors, model))
    return problems


def _data_location(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Keep the parts of a pydantic location that exist in the document; drop union/validator tags."""
    kept: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            kept.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            kept.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not _is_tag(part):
            kept.append(part)  # a missing or unknown key: still the place to point at
            node = None
    return tuple(kept)


_MAPPING_EXPECTED = frozenset({"dict_type", "model_type", "model_attributes_type"})
_SCALAR_EXPECTED = frozenset({"string_type", "literal_error", "int_type", "int_parsing", "float_type", "float_parsing",
                              "bool_type", "bool_parsing", "string_pattern_mismatch", "list_type"})


def _wrong_union_branch(err: dict[str, Any]) -> bool:
    """An error that only says the value has another shape than one alternative of a union."""
    value = err.get("input")
    if isinstance(value, dict):
        return err["type"] in _SCALAR_EXPECTED
    return err["type"] in _MAPPING_EXPECTED


def _is_tag(part: str) -> bool:
    """A union member or validator name pydantic adds to locations (never a YAML key of ours)."""
    return (
        "[" in part
        or "-" in part
        or part in ("str", "int", "float", "bool", "list", "dict")
        or (part[:1].isupper() and part.replace("_", "").isalnum())
    )


def _problem(text: str, data: Any, location: list[Any], errors: list[dict[str, Any]], model: type[BaseModel]) -> SpecProblem:
    dotted = ".".join(str(p) for p in location)
    extra = next((e for e in errors if e["type"] == "extra_forbidden"), None)
    if extra is not None and location:
        key = str(location[-1])
        if key in BLOCK_LOAD_ERRORS:
            line, column = locate_key(text, location)
            return SpecProblem(f"unknown key `{key}`: {BLOCK_LOAD_ERRORS[key]}", line=line, column=column, location=dotted)
        allowed = _allowed_keys(location[:-1], model)
        hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        suggestion = f"did you mean `{hint[0]}`?" if hint else f"allowed keys: {', '.join(sorted(allowed))}"
        line, column = locate_key(text, location)
        return SpecProblem(f"unknown key `{key}`: {suggestion}", line=line, column=column, location=dotted)
    if all(e["type"] == "missing" for e in errors) and location:
        line, column = locate(text, location[:-1])
        return SpecProblem(f"missing required key `{location[-1]}`", line=line, column=column, location=dotted)
    messages = list(dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in errors if e["type"] != "missing"))
    line, column = locate(text, location)
    return SpecProblem("; or ".join(messages), line=line, column=column, location=dotted)


def _allowed_keys(parent_location: list[Any], model: type[BaseModel]) -> list[str]:
    """Keys of the model found at ``parent_location``, walking the spec's type tree."""
    for part in parent_location:
        field_info = model.model_fields.get(str(part)) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field_info is None:
            continue  # a dict key (step id) or list index: the value has the same model
        lazy = next((m for m in field_info.metadata if isinstance(m, LazyBlock)), None)
        nested = lazy.model if lazy is not None else _model_in(field_info.annotation)
        if nested is not None:
            model = nested
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
