"""Singer targets for PostgreSQL: ``osds-target-postgres`` against meltanolabs-target-postgres and
pipelinewise-target-postgres, on the same messages, in the same run.

Input: ``--singer-records`` RECORD messages of one keyed stream of 5 columns (integer key, two
strings, a number, a date-time) with a STATE every 50,000, written once to
``bench/.work/singer/``. Each target reads the file on its stdin in its own process (the two others
from the virtualenv a step with their ``pip_url`` runs: ``airflow_osds.singer.plugins.executable``), into
an empty schema of one throw-away embedded PostgreSQL, in rounds that alternate the order. Timed:
the whole process, start-up included. Checked after every run: the row count and a digest of the
loaded values (normalized to text, so the targets' column types do not matter) must equal ours,
and the last state line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from envs import PROJECT_PYTHON, REPO, WORK, ChildFailed
from sections import meta_line, targets_table
from stats import Stat

__all__ = ["measure_singer_targets", "singer_entries", "singer_section", "user_record"]

TARGETS = {
    "ours": None,
    "meltanolabs": ("meltanolabs-target-postgres==0.8.1", "target-postgres"),
    "pipelinewise": ("pipelinewise-target-postgres==2.1.2", "target-postgres"),
}
_DIGEST = ("SELECT count(*), md5(string_agg(concat_ws('|', id::bigint, name, email, score::float8, "
           "updated_at IS NOT NULL), ',' ORDER BY id::bigint)) FROM {schema}.{table}")


def _log(message: str) -> None:
    print(f"bench: singer: {message}", file=sys.stderr, flush=True)


def user_record(i: int) -> dict[str, Any]:
    """Record ``i`` of the 5-column ``users`` stream (also bench/singer_pipe.py's tap input)."""
    return {"id": i, "name": f"user {i}", "email": f"u{i}@example.com", "score": i * 0.25,
            "updated_at": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"}


def _messages(n: int) -> Path:
    folder = WORK / "singer"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"users-{n}.jsonl"
    if path.exists():
        return path
    schema = {"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": ["null", "string"]}, "email": {"type": ["null", "string"]},
        "score": {"type": ["null", "number"]}, "updated_at": {"type": ["null", "string"], "format": "date-time"}}}}
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        out.write(json.dumps(schema) + "\n")
        for i in range(n):
            out.write(json.dumps({"type": "RECORD", "stream": "users", "record": user_record(i)}) + "\n")
            if i % 50_000 == 49_999 or i == n - 1:
                out.write(json.dumps({"type": "STATE", "value": {"bookmarks": {"users": {"id": i}}}}) + "\n")
    tmp.rename(path)
    return path


def _executable(name: str) -> Path:
    if TARGETS[name] is None:
        return PROJECT_PYTHON.parent / "osds-target-postgres"
    from airflow_osds.singer.plugins import executable

    requirement, command = TARGETS[name]  # type: ignore[misc]
    _log(f"{name}: virtualenv ({requirement}) from the component cache")
    # The product's own resolution: the same virtualenv a step with this pip_url runs (cache key plugins.env_name).
    return executable(command, pip_url=requirement)


def _config(name: str, pg: Any, schema: str) -> dict[str, Any]:
    c = pg.airflow_connection("bench_singer")
    if name == "ours":
        return {"host": c["host"], "port": c["port"], "user": c["login"], "password": c["password"],
                "database": "bench_singer", "default_target_schema": schema}
    if name == "meltanolabs":  # as it ships (validation, metadata columns), with COPY; upsert like the others
        return {"sqlalchemy_url": pg.uri("bench_singer", driver="psycopg"), "default_target_schema": schema,
                "use_copy": True, "load_method": "upsert"}
    return {"host": c["host"], "port": c["port"], "user": c["login"], "password": c["password"],
            "dbname": "bench_singer", "default_target_schema": schema}


def measure_singer_targets(reps: int, records: int) -> dict[str, Any]:
    from airflow_osds.embedded import EmbeddedPostgres

    started = time.monotonic()
    messages = _messages(records)
    executables = {name: _executable(name) for name in TARGETS}
    out: dict[str, Any] = {"records": records, "reps": reps, "runs": {name: [] for name in TARGETS}}
    pg = EmbeddedPostgres(WORK / "singer" / "pg").start()
    try:
        pg.create_database("bench_singer")
        names = list(TARGETS)
        for rep in range(reps):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                schema = f"bench_{name}"
                with pg.connect("bench_singer", autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                config = WORK / "singer" / f"{name}.json"
                config.write_text(json.dumps(_config(name, pg, schema)))
                begun = time.perf_counter()
                with messages.open("rb") as stdin:
                    proc = subprocess.run([str(executables[name]), "--config", str(config)], stdin=stdin,
                                          capture_output=True, text=True, timeout=1800)
                seconds = time.perf_counter() - begun
                if proc.returncode != 0:
                    raise ChildFailed(f"{name} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
                with pg.connect("bench_singer") as conn:
                    rows, digest = conn.execute(_DIGEST.format(schema=schema, table="users")).fetchone()
                last_state = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
                out["runs"][name].append({"seconds": seconds, "rows": rows, "digest": digest, "state": last_state})
                _log(f"round {rep + 1}: {name} {seconds:.1f} s ({records / seconds:,.0f} records/s), {rows:,} rows")
        out["pg_version"] = pg.connect("bench_singer").execute("SHOW server_version").fetchone()[0]
    finally:
        pg.stop()
    reference = out["runs"]["ours"][0]
    for name, runs in out["runs"].items():
        for run in runs:
            if (run["rows"], run["digest"]) != (reference["rows"], reference["digest"]) or run["rows"] != records:
                raise ChildFailed(f"{name} loaded other rows than ours: {run['rows']} rows, digest {run['digest']} "
                                  f"(ours: {reference['rows']}, {reference['digest']})")
    out["wall_s"] = time.monotonic() - started
    return out


def _rates(result: dict[str, Any], name: str) -> list[float]:
    return [result["records"] / r["seconds"] for r in result["runs"][name]]


def singer_entries(result: dict[str, Any], *, command: str, date: str, commit: str) -> list[tuple[dict[str, Any], str]]:
    ours = statistics.median(_rates(result, "ours"))
    rows = [
        ("singer_target.ours.records_per_s", ours, 100_000.0, ">= 1", "at least 100k records/s on 5-column records"),
        ("singer_target.ours.vs_meltanolabs", ours, statistics.median(_rates(result, "meltanolabs")), ">= 10",
         "at least 10× meltanolabs-target-postgres"),
        ("singer_target.ours.vs_pipelinewise", ours, statistics.median(_rates(result, "pipelinewise")), ">= 4",
         "at least 4× pipelinewise-target-postgres"),
    ]
    out = []
    for rid, mine, theirs, target, source in rows:
        ratio = mine / theirs
        out.append(({"id": rid, "ours": round(mine, 3), "theirs": round(theirs, 3), "unit": "records/s",
                     "ratio": round(ratio, 4), "target": target, "met": ratio >= float(target.split()[1]),
                     "command": command, "date": date, "commit": commit}, source))
    return out


def singer_section(meta: dict[str, str], result: dict[str, Any] | None, rows: list[tuple[dict[str, Any], str]],
                   error: str | None) -> str:
    out = ["## Singer targets: osds-target-postgres vs meltanolabs-target-postgres and pipelinewise-target-postgres",
           "", meta_line(meta), ""]
    if not result:
        return "\n".join(out + [f"n/a: {error}", ""])
    out += [__doc__.split("\n\n")[1].replace("\n", " "), "",
            f"{result['records']:,} records, PostgreSQL {result['pg_version']} (embedded), {result['reps']} round(s); "
            f"the part took {result['wall_s'] / 60:.1f} min. meltanolabs 0.8.1 runs with `use_copy: true` and "
            "`load_method: upsert` (its validation and metadata columns as shipped); pipelinewise 2.1.2 as shipped.", "",
            "| target | whole process | records/s | last state line |", "|---|---:|---:|---|"]
    for name, runs in result["runs"].items():
        seconds = Stat.of([r["seconds"] for r in runs])
        out.append(f"| {name} | {seconds.ms()} | {statistics.median(_rates(result, name)):,.0f} | "
                   f"`{json.dumps(runs[0]['state'])}` |")
    out += ["", "Every run loaded the same rows (count and digest of the values).", "", "### Targets", ""]
    sources = {e["id"]: src for e, src in rows}
    out += targets_table([e for e, _ in rows], "checks", lambda e: sources[e["id"]])
    return "\n".join(out).rstrip() + "\n"
