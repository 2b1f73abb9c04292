"""Reusing ``osds dbt-parse``'s parse in every task (dbt partial parsing), and saying when it is not reused.

Each task runs dbt in a fresh target directory, so without help dbt parses the whole project
again (~1 s for a small one, far more for a large one). ``dbt parse`` leaves
``partial_parse.msgpack`` beside the manifest; a task that copies it into its own target
directory lets dbt skip parsing, provided every input of dbt's partial-parse check is the
same as at parse time (``dbt/parser/manifest.py: build_manifest_state_check``):

- the ``--vars``, the profile and target names and the dbt version (one hash);
- the non-secret connection fields (host, port, user, database, schema, options);
- the values of the environment variables ``dbt_project.yml`` reads;
- the ``dbt_project.yml`` of the project and of each package (and every parsed file's content,
  which dbt re-parses one by one when it changed).

:func:`seed` compares what it can know before dbt starts and copies the state when they match;
:func:`outcome` reads dbt's own log afterwards, which has the last word.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_osds.dbt.fingerprint import ParseRecord

__all__ = ["PARSE_STATE_FILE", "SILENT", "ParseReuse", "connection_fields", "is_parse_line", "outcome", "seed"]

PARSE_STATE_FILE = "partial_parse.msgpack"
_UNABLE = "Unable to do partial parsing because"
_NOT_FOUND = "Partial parse save file not found"
_ENABLED = "Partial parsing enabled"


@dataclass(frozen=True)
class ParseReuse:
    """Whether a task's dbt run starts from the recorded parse, and why not."""

    seeded: bool
    reason: str  # why the state was not copied, or "" when it was
    # The project's files and dbt's own packages are those of the parse, proven before dbt starts
    # (fingerprint and versions): dbt need not read and hash every file again to find no change.
    files_unchanged: bool = False

    def log_line(self) -> str:
        if self.seeded:
            return "dbt partial parsing: reusing the parse of `osds dbt-parse` (no full parse expected)"
        return f"dbt partial parsing not possible, dbt parses the whole project: {self.reason}"


def seed(
    parse_dir: Path,
    target_dir: Path,
    *,
    record: ParseRecord | None,
    connection: Mapping[str, Any],
    vars: Mapping[str, Any] | None,
    profile_name: str,
    target_name: str,
    dbt_version: str | None,
) -> ParseReuse:
    """Copy ``parse_dir``'s parse state into ``target_dir`` when this run's inputs are the parse's.

    :param connection: :func:`connection_fields` of the run's target.
    :param dbt_version: the version that will run, when known (``None``: a dbt in another
        virtualenv; dbt itself then checks it).
    """
    reason = _mismatch(parse_dir, record, connection, vars, profile_name, target_name, dbt_version)
    if reason:
        return ParseReuse(False, reason)
    shutil.copyfile(parse_dir / PARSE_STATE_FILE, target_dir / PARSE_STATE_FILE)
    return ParseReuse(True, "")


def _mismatch(
    parse_dir: Path, record: ParseRecord | None, connection: Mapping[str, Any], vars: Mapping[str, Any] | None,
    profile_name: str, target_name: str, dbt_version: str | None,
) -> str:
    command = "run `osds dbt-parse --connection <conn_id>` where the steps' connection resolves"
    if record is None or not (parse_dir / PARSE_STATE_FILE).is_file():
        return f"no parse state beside the manifest in {parse_dir}; {command}"
    if not record.connection:
        return f"the manifest was parsed without the warehouse's connection; {command}"
    differ = sorted(k for k in set(record.connection) | set(connection) if record.connection.get(k) != connection.get(k))
    if differ:
        return f"the connection's {', '.join(differ)} differ from the parse's; {command} for this connection"
    if _canonical(vars) != _canonical(record.vars):
        return "this run's vars differ from the parse's (a templated var, or `osds dbt-parse --vars` not matching)"
    if (profile_name, target_name) != (record.profile_name, record.target_name):
        return f"profile/target {profile_name}/{target_name} differ from the parse's {record.profile_name}/{record.target_name}"
    if dbt_version and record.dbt_version and dbt_version != record.dbt_version:
        return f"dbt {dbt_version} runs, the project was parsed by dbt {record.dbt_version}"
    return ""


def _canonical(vars: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(vars or {}), sort_keys=True, default=str)


def outcome(log_lines: Iterable[str]) -> tuple[bool, str]:
    """What dbt's log says about parsing: ``(True, "")`` when it parsed partially, else ``(False, why)``."""
    full = None
    partial = False
    for line in log_lines:
        if _UNABLE in line:
            full = line.split(_UNABLE, 1)[1].strip().rstrip(".")
        elif _NOT_FOUND in line:
            full = "there was no parse state"
        elif _ENABLED in line:
            partial = True
    if full is not None:
        return False, full
    return partial, "" if partial else SILENT


SILENT = "dbt's log says nothing about partial parsing"


def is_parse_line(line: str) -> bool:
    """Whether a dbt log line is one :func:`outcome` reads."""
    return _UNABLE in line or _NOT_FOUND in line or _ENABLED in line


def connection_fields(target: Any) -> dict[str, Any]:
    """The fields of a :class:`~airflow_osds.dbt.profiles.PostgresTarget` that dbt's partial-parse
    check hashes (never the password)."""
    return {"host": target.host, "port": target.port, "user": target.user, "dbname": target.dbname,
            "schema": target.schema,
            # The profile's default application_name is part of the hash (a parse made before it existed differs).
            "options": dict(sorted({"application_name": "", **target.options}.items()))}
