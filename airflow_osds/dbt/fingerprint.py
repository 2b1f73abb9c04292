"""Is a project's ``manifest.json`` current? A fingerprint of the files ``dbt parse`` reads.

The DAG is rendered from the manifest at parse time, where running dbt is not allowed.
``osds dbt-parse`` writes the manifest and, next to it, the fingerprint of the project it
parsed; the factory compares it with the project as it is now and reports a stale manifest
instead of rendering yesterday's models. The fingerprint hashes file *contents* (not
mtimes), so a fresh checkout of the same commit matches a manifest built in CI.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["FINGERPRINT_FILE", "project_files", "project_fingerprint", "read_fingerprint", "write_fingerprint"]

FINGERPRINT_FILE = "osds_fingerprint.json"
_SUFFIXES = frozenset({".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".jinja", ".j2"})
_SKIP_DIRS = frozenset({"target", "logs", "dbt_packages", "dbt_modules", ".git", "__pycache__"})
# (path, mtime_ns, size) → content digest: a DAG processor re-parsing an unchanged project
# hashes nothing twice.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def project_fingerprint(project_dir: str | os.PathLike[str]) -> str:
    """A digest of every file of the project that can change the manifest."""
    root = Path(project_dir).resolve()
    outer = hashlib.sha256()
    for path in project_files(root):
        outer.update(str(path.relative_to(root)).encode())
        outer.update(_digest(path).encode())
    return outer.hexdigest()


def project_files(project_dir: str | os.PathLike[str]) -> list[Path]:
    """The files the fingerprint covers, in a stable order."""
    root = Path(project_dir).resolve()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        files.extend(Path(dirpath) / name for name in sorted(filenames) if Path(name).suffix in _SUFFIXES)
    return files


def _digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def write_fingerprint(target_dir: str | os.PathLike[str], fingerprint: str) -> None:
    (Path(target_dir) / FINGERPRINT_FILE).write_text(json.dumps({"fingerprint": fingerprint}))


def read_fingerprint(target_dir: str | os.PathLike[str]) -> str | None:
    try:
        return str(json.loads((Path(target_dir) / FINGERPRINT_FILE).read_text())["fingerprint"])
    except (OSError, ValueError, KeyError):
        return None
