"""One Singer sync, ``tap | target``, from resolved plugins: config and catalog in private files, state
from and to the warehouse (no Airflow imports; :class:`~airflow_osds.operators.singer.SingerOperator`
is the Airflow face).

The order of a sync:

1. the state: cleared on a full refresh; else the stored one (:mod:`airflow_osds.singer.state`), or,
   when there is none yet, one imported from elsewhere (a Meltano state backend);
2. the catalog: the given one, or the tap's ``--discover`` output, with the ``select`` patterns and
   ``metadata`` applied (:mod:`airflow_osds.singer.catalog`); no catalog at all when neither a
   catalog nor a selection is given (the tap syncs what it selects by default);
3. ``tap --config … [--state …] [--catalog …] | target --config …`` (:func:`~airflow_osds.singer.runner.run_pipe`),
   every state line the target prints stored at once, so a failure keeps the last committed point.

Config, state and catalog files live in a directory only the task's user can read, removed
whatever happens; every secret (the connection passwords, any setting whose name says it is
secret) is masked in every log line and error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_osds.singer import state as singer_state
from airflow_osds.singer.runner import SingerError, SingerRun, mask, run_pipe

__all__ = ["Plugin", "SyncReport", "connection_config", "discover", "private_dir", "secrets_in", "sync"]

#: Setting names whose values are masked wherever they could be printed.
_SECRET_NAME = re.compile(r"pass|secret|token|key$|_key|apikey|credential|private", re.IGNORECASE)
_DISCOVER_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Plugin:
    """A tap or target ready to run: its executable and its complete config."""

    name: str  # what state ids and logs call it (Meltano's plugin name)
    command: tuple[str, ...]  # the executable (and any fixed arguments)
    config: Mapping[str, Any] = field(default_factory=dict)
    catalog_arg: str = "--catalog"  # legacy taps take --properties


@dataclass
class SyncReport:
    state_id: str
    run: SingerRun
    streams: list[str]  # the streams the catalog selected ([] when the tap ran without a catalog)
    started_from: str  # "stored state", "imported state", "no state", "full refresh"

    @property
    def record_counts(self) -> dict[str, int]:
        return self.run.record_counts


def connection_config(*, host: str | None, port: int | None, login: str | None, password: str | None,
                      schema: str | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings an Airflow connection gives a tap or target: ``host``, ``port``, ``user``, ``password``,
    ``database`` (and ``dbname``, which pipelinewise plugins read), then the connection's extras, which
    add or override settings (e.g. ``{"filter_schemas": ["public"]}``)."""
    config: dict[str, Any] = {"host": host, "port": port, "user": login, "password": password,
                              "database": schema, "dbname": schema}
    config = {k: v for k, v in config.items() if v not in (None, "")}
    config.update(extra or {})
    return config


def secrets_in(config: Mapping[str, Any]) -> list[str]:
    """The values of ``config`` (nested too) under names that say they are secret, longest first."""
    found: set[str] = set()

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, secret or bool(_SECRET_NAME.search(str(k))))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, secret)
        elif secret and value not in (None, "") and not isinstance(value, bool):
            found.add(str(value))

    walk(config, False)
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


@contextmanager
def private_dir(prefix: str = "osds-singer-") -> Iterator[Path]:
    """A directory only this user can read (0700), removed with everything in it whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(path, stat.S_IRWXU)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_json(directory: Path, name: str, value: Any) -> Path:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(value, out)
    return path


def discover(tap: Plugin, config_path: Path, *, secrets: Sequence[str] = (), timeout: float = _DISCOVER_TIMEOUT_S,
             env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The tap's catalog: ``tap --config … --discover``.

    :raises SingerError: the tap failed, timed out or printed something that is not a catalog.
    """
    try:
        done = subprocess.run([*tap.command, "--config", str(config_path), "--discover"], capture_output=True,
                              timeout=timeout, env=dict(env) if env is not None else None)
    except subprocess.TimeoutExpired:
        raise SingerError(f"{tap.name} --discover timed out after {timeout:g} s", SingerRun()) from None
    except OSError as exc:
        raise SingerError(mask(f"{tap.name} --discover could not start: {exc}", secrets), SingerRun()) from None
    log = mask(done.stderr.decode("utf-8", "replace"), secrets)
    if done.returncode != 0:
        tail = "\n".join(log.splitlines()[-20:])
        raise SingerError(f"{tap.name} --discover failed (exit {done.returncode}):\n{tail}", SingerRun(tap_exit=done.returncode))
    try:
        catalog = json.loads(done.stdout)
    except ValueError:
        raise SingerError(f"{tap.name} --discover printed no JSON catalog: "
                          f"{mask(done.stdout[:200].decode('utf-8', 'replace'), secrets)!r}", SingerRun()) from None
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        raise SingerError(f"{tap.name} --discover printed JSON that is not a catalog ({{\"streams\": [...]}})", SingerRun())
    return catalog


def sync(
    conn: Any,
    tap: Plugin,
    target: Plugin,
    *,
    state_id: str,
    full_refresh: bool = False,
    catalog: Mapping[str, Any] | None = None,
    select: Sequence[str] = (),
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
    imported_state: Callable[[], Any] | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    extra_secrets: Sequence[str] = (),
    say: Callable[[str], None] = lambda line: None,
    on_log: Callable[[str, str], None] = lambda side, line: None,
) -> SyncReport:
    """Run one sync (see the module docstring); ``conn`` is an autocommit psycopg connection to where the state is kept.

    :param imported_state: called when no state is stored (and it is not a full refresh): a state to
        start from, or ``None``; it is stored before the run.
    :raises SingerError: discovery or the run failed; the state stays at the last committed point.
    :raises CatalogError: the selection does not fit the tap's catalog.
    """
    from airflow_osds.singer.catalog import apply, selected_streams

    secrets = sorted({*secrets_in(tap.config), *secrets_in(target.config), *(s for s in extra_secrets if s)},
                     key=len, reverse=True)
    if full_refresh:
        removed = singer_state.clear(conn, state_id)
        start, started_from = None, "full refresh"
        say(f"Full refresh: state {state_id!r} {'cleared' if removed else 'was empty'}; the tap starts from scratch")
    else:
        start = singer_state.get(conn, state_id)
        started_from = "stored state" if start is not None else "no state"
        if start is None and imported_state is not None:
            start = imported_state()
            if start is not None:
                singer_state.put(conn, state_id, start)
                started_from = "imported state"
        say(f"State {state_id!r}: {started_from}" + (f": {json.dumps(start)[:500]}" if start is not None else ""))

    with private_dir() as directory:
        tap_config = _write_json(directory, "tap.config.json", dict(tap.config))
        target_config = _write_json(directory, "target.config.json", dict(target.config))
        tap_cmd = [*tap.command, "--config", str(tap_config)]
        streams: list[str] = []
        if catalog is not None or select or metadata:
            if catalog is None:
                say(f"Discovering {tap.name}'s streams")
                catalog = discover(tap, tap_config, secrets=secrets, env=env)
            catalog = apply(catalog, select, metadata or {})
            streams = selected_streams(catalog)
            say(f"Catalog: {len(streams)} stream(s) selected: {', '.join(streams)}")
            tap_cmd += [tap.catalog_arg, str(_write_json(directory, "catalog.json", catalog))]
        if start is not None:
            tap_cmd += ["--state", str(_write_json(directory, "state.json", start))]

        def keep(value: Any) -> None:
            singer_state.put(conn, state_id, value)

        run = run_pipe(tap_cmd, [*target.command, "--config", str(target_config)], env=env, cwd=directory,
                       timeout=timeout, secrets=secrets, on_log=on_log, on_state=keep)
    return SyncReport(state_id=state_id, run=run, streams=streams, started_from=started_from)
