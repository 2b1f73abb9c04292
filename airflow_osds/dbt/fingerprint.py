"""Is a project's ``manifest.json`` current, and how was it parsed? The parse record beside it.

The DAG is rendered from the manifest at parse time, where running dbt is not allowed.
``osds dbt-parse`` writes the manifest and, next to it, a :class:`ParseRecord`: a
fingerprint of the files ``dbt parse`` reads, and the settings that decided the manifest —
the target schema (it names every model's relation), the ``--vars`` (they enable models and
feed dbt's partial-parse check), the profile and target names and the dbt version. The
factory compares the fingerprint with the project as it is now and reports a stale
manifest instead of rendering yesterday's models; the step runs with the recorded schema.
The fingerprint hashes file *contents* (not mtimes), so a fresh checkout of the same commit
matches a manifest built in CI.

What dbt reads is what ``dbt_project.yml`` points it at (``model-paths``, ``seed-paths``,
``macro-paths`` …, with dbt's defaults), the project's own YAML files (``dbt_project.yml``,
``packages.yml``, ``dependencies.yml``, ``selectors.yml``), and the same for every installed
package under ``packages-install-path``. Anything else — a ``profiles.yml`` kept in the
project, scripts, notebooks — does not change the manifest and does not make it stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FINGERPRINT_FILE",
    "ParseRecord",
    "installed_dbt_packages",
    "project_files",
    "project_fingerprint",
    "read_fingerprint",
    "read_parse_record",
    "stale_reason",
    "write_fingerprint",
]

FINGERPRINT_FILE = "osds_fingerprint.json"
_SUFFIXES = frozenset({".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".jinja", ".j2"})
_PROJECT_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml", "selectors.yml")
# dbt-core 1.11's defaults (dbt/config/project.py); docs-paths defaults to all of them.
_DEFAULT_PATHS = {
    "model-paths": ["models"],
    "seed-paths": ["seeds"],
    "snapshot-paths": ["snapshots"],
    "macro-paths": ["macros"],
    "analysis-paths": ["analyses"],
    "test-paths": ["tests"],
    "function-paths": ["functions"],
}
# (path, mtime_ns, size) → content digest: re-checking an unchanged project hashes nothing twice.
_DIGESTS: dict[tuple[str, int, int], str] = {}
_CONFIGS: dict[tuple[str, int, int], dict[str, Any]] = {}  # dbt_project.yml by (path, mtime, size)


@dataclass(frozen=True)
class ParseRecord:
    """How ``osds dbt-parse`` made the manifest beside it."""

    fingerprint: str
    target_schema: str | None = None  # None: an older record, or a manifest from plain `dbt parse`
    vars: Mapping[str, Any] = field(default_factory=dict)
    profile_name: str = "osds"
    target_name: str = "osds"
    dbt_version: str = ""
    # Non-secret connection fields of the parse's profile (dbt's partial-parse check hashes them).
    connection: Mapping[str, Any] = field(default_factory=dict)
    # Versions of the distributions whose macros dbt parses beside the project's (in process only).
    dbt_packages: Mapping[str, str] = field(default_factory=dict)


def project_fingerprint(project_dir: str | os.PathLike[str]) -> str:
    """A digest of every file of the project (and its installed packages) that ``dbt parse`` reads."""
    root = Path(project_dir).resolve()
    outer = hashlib.sha256()
    for path in project_files(root):
        # relpath: a `local:` package is a symlink to a folder outside the project.
        outer.update(os.path.relpath(path, root).encode())
        outer.update(_digest(path).encode())
    return outer.hexdigest()


# The distributions holding the macros dbt parses besides the project's (global project, adapter).
_DBT_DISTRIBUTIONS = ("dbt-core", "dbt-adapters", "dbt-postgres")


def installed_dbt_packages() -> dict[str, str]:
    """Versions of the dbt distributions installed in this interpreter (``{}`` without dbt)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in _DBT_DISTRIBUTIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def project_files(project_dir: str | os.PathLike[str]) -> list[Path]:
    """The files the fingerprint covers, in a stable order."""
    root = Path(project_dir).resolve()
    files: set[Path] = set()
    config = _project_config(root)
    _add_project(root, config, files)
    install = root / str(config.get("packages-install-path") or "dbt_packages")
    if install.is_dir():
        for package in sorted(p for p in install.iterdir() if (p / "dbt_project.yml").is_file()):
            # Resolved: `dbt deps` links a `local:` package to its folder, whose files must count too.
            _add_project(package.resolve(), _project_config(package), files)
    return sorted(files)


def _add_project(root: Path, config: Mapping[str, Any], files: set[Path]) -> None:
    files.update(root / name for name in _PROJECT_FILES if (root / name).is_file())
    folders = {p for key, default in _DEFAULT_PATHS.items() for p in _paths(config, key, default)}
    folders |= set(_paths(config, "docs-paths", sorted(folders)))
    for folder in sorted(folders):
        base = (root / folder).resolve()
        if not base.is_dir() or not base.is_relative_to(root):
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            files.update(Path(dirpath) / name for name in filenames if Path(name).suffix in _SUFFIXES)


def _paths(config: Mapping[str, Any], key: str, default: list[str]) -> list[str]:
    value = config.get(key)
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else list(default)


def _project_config(root: Path) -> dict[str, Any]:
    """``dbt_project.yml`` as data; {} (dbt's default paths) when it cannot be read as plain YAML.

    Read once per process and file version: a dbt task checks the fingerprint twice (is the
    manifest stale, may dbt trust the saved parse), and libyaml reads it in a fraction of
    PyYAML's pure-Python ``safe_load`` time.
    """
    import yaml

    path = root / "dbt_project.yml"
    try:
        st = path.stat()
    except OSError:
        return {}
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _CONFIGS:
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            data = {}
        _CONFIGS[key] = data if isinstance(data, dict) else {}
    return _CONFIGS[key]


def _digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def write_fingerprint(
    target_dir: str | os.PathLike[str], fingerprint: str, *, target_schema: str | None = None, **settings: Any
) -> ParseRecord:
    """Write the parse record beside the manifest; ``settings`` are :class:`ParseRecord` fields."""
    record = ParseRecord(fingerprint=fingerprint, target_schema=target_schema, **settings)
    (Path(target_dir) / FINGERPRINT_FILE).write_text(json.dumps(asdict(record), sort_keys=True, default=str))
    return record


def read_parse_record(target_dir: str | os.PathLike[str]) -> ParseRecord | None:
    try:
        data = json.loads((Path(target_dir) / FINGERPRINT_FILE).read_text())
        known = {k: v for k, v in data.items() if k in ParseRecord.__dataclass_fields__}
        return ParseRecord(**known)
    except (OSError, ValueError, TypeError):
        return None


def stale_reason(project_dir: str | os.PathLike[str], parse_dir: str | os.PathLike[str]) -> str | None:
    """Why the manifest in ``parse_dir`` no longer describes the project, or ``None``.

    ``None`` too when ``parse_dir`` holds no parse record: a manifest made outside
    ``osds dbt-parse`` cannot be dated.
    """
    record = read_parse_record(parse_dir)
    if record is None or record.fingerprint == project_fingerprint(project_dir):
        return None
    return (
        f"the dbt manifest in {parse_dir} is older than the project's files: run `osds dbt-parse {project_dir}` "
        "(the deployment step) so the DAG and dbt see the same models"
    )


def read_fingerprint(target_dir: str | os.PathLike[str]) -> str | None:
    record = read_parse_record(target_dir)
    return record.fingerprint if record is not None else None
