"""The Snowplow part: our full load against a bare COPY of the same file and the Snowplow SDK's transform.

For each input shape (``generated``: bench/snowplow_child.py's file from our generator, whose
visitors repeat their derived contexts as real traffic does; ``distinct``: the same events with
every derived-contexts text made unique, the worst case for the loader's per-chunk memo), on one
throw-away embedded PostgreSQL, in rounds that alternate who goes first:

* **bare**: one client ``COPY`` of the file into a 131-column all-text table (the ceiling);
* **ours**: ``airflow_osds.snowplow.loader.load`` into an empty ``atomic`` schema, each run in a
  fresh process (parse, Iglu validation, shredding, typed COPY, ledger, bad rows).

Then the Snowplow Analytics SDK 0.2.3's pure-Python ``transform`` over the same lines in its own
virtualenv (the component cache, as the cross-check test builds it), and the peak RSS of our load
of a gzip file of ``--snowplow-lines`` events against one of ``--snowplow-rss-lines`` (5×).
Inputs are generated once into ``bench/.work/snowplow/`` and reused while the generator's source
is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from envs import BENCH_DIR, PROJECT_PYTHON, REPO, WORK, ChildFailed
from sections import meta_line, targets_table
from stats import Stat

__all__ = ["measure_snowplow", "snowplow_entries", "snowplow_section"]

CHILD = BENCH_DIR / "snowplow_child.py"
SHAPES = ("generated", "distinct")
IGLU_CENTRAL = REPO / "tests" / "data" / "iglu-central"
SDK_LINES = 50_000

_SDK_CHILD = r"""
import json, sys, time
from snowplow_analytics_sdk.event_transformer import transform
from snowplow_analytics_sdk.snowplow_event_transformation_exception import SnowplowEventTransformationException
n = errors = 0
started = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as lines:
    for line in lines:
        if n == int(sys.argv[2]):
            break
        n += 1
        try:
            transform(line.rstrip("\n"))
        except SnowplowEventTransformationException:
            errors += 1
print(json.dumps({"seconds": time.perf_counter() - started, "lines": n, "errors": errors}))
"""


def _log(message: str) -> None:
    print(f"bench: snowplow: {message}", file=sys.stderr, flush=True)


def _child(python: Path, *args: str, timeout: float = 1800) -> dict[str, Any]:
    proc = subprocess.run([str(python), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ChildFailed(f"{' '.join(args[:2])} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _input(lines: int, shape: str, *, gzip: bool = False) -> Path:
    """The generated file, reused while the generator and this child are unchanged."""
    stamp = hashlib.sha256(b"".join(p.read_bytes() for p in (
        REPO / "airflow_osds" / "snowplow" / "generate.py", CHILD))).hexdigest()[:12]
    folder = WORK / "snowplow"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shape}-{lines}-{stamp}.tsv{'.gz' if gzip else ''}"
    if not path.exists():
        for stale in folder.glob(f"{shape}-{lines}-*.tsv{'.gz' if gzip else ''}"):
            stale.unlink()
        _log(f"generating {path.name}")
        args = ["generate", "--lines", str(lines), "--shape", shape, "--out", str(path)]
        _child(PROJECT_PYTHON, str(CHILD), *args, *(["--gzip"] if gzip else []))
    return path


def _registry() -> Path:
    from airflow_osds.snowplow import generate

    root = WORK / "snowplow" / "iglu"
    generate.write_custom_schemas(root)
    return root


def measure_snowplow(reps: int, lines: int, rss_lines: int) -> dict[str, Any]:
    from airflow_osds.embedded import EmbeddedPostgres

    sys.path.insert(0, str(REPO / "tests" / "integration" / "snowplow"))
    from _venv import ensure_sdk_venv

    started = time.monotonic()
    inputs = {shape: _input(lines, shape) for shape in SHAPES}
    rss_inputs = {n: _input(n, "generated", gzip=True) for n in (lines, rss_lines)}
    iglu = [str(_registry()), str(IGLU_CENTRAL)]
    out: dict[str, Any] = {"lines": lines, "rss_lines": rss_lines, "reps": reps, "shapes": {},
                           "bytes": {s: p.stat().st_size for s, p in inputs.items()}}
    state = WORK / "snowplow" / "pg"
    pg = EmbeddedPostgres(state).start()
    try:
        pg.create_database("bench_snowplow")
        dsn = pg.uri("bench_snowplow")
        for shape, path in inputs.items():
            runs: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": []}
            for rep in range(reps):
                order = ("bare", "ours") if rep % 2 == 0 else ("ours", "bare")
                for side in order:
                    extra = [a for d in iglu for a in ("--iglu", d)] if side == "ours" else []
                    result = _child(PROJECT_PYTHON, str(CHILD), side, "--conninfo", dsn, "--file", str(path), *extra)
                    if result["rows"] != lines - (result.get("summary", {}).get("bad_rows", 0)):
                        raise ChildFailed(f"{side} on {path.name} loaded {result['rows']} rows of {lines}")
                    runs[side].append(result)
                    _log(f"{shape} round {rep + 1}: {side} {result['seconds']:.1f} s")
            out["shapes"][shape] = runs
        out["rss"] = {}
        for n, path in rss_inputs.items():
            result = _child(PROJECT_PYTHON, str(CHILD), "ours", "--conninfo", dsn, "--file", str(path),
                            *[a for d in iglu for a in ("--iglu", d)])
            if result["rows"] != n:
                raise ChildFailed(f"ours on {path.name} loaded {result['rows']} rows of {n}")
            out["rss"][str(n)] = result
            _log(f"rss {n:,} events (gzip): {result['maxrss_kb'] / 1024:.0f} MiB, {result['seconds']:.1f} s")
        out["pg_version"] = pg.connect("bench_snowplow").execute("SHOW server_version").fetchone()[0]
    finally:
        pg.stop()
    sdk_python, iglu_args = ensure_sdk_venv(), [a for d in iglu for a in ("--iglu", d)]
    out["sdk"], out["parse"] = [], []
    for _ in range(reps):
        out["sdk"].append(_child(sdk_python, "-c", _SDK_CHILD, str(inputs["generated"]), str(SDK_LINES)))
        out["parse"].append(_child(PROJECT_PYTHON, str(CHILD), "parse", "--file", str(inputs["generated"]), *iglu_args))
    _log(f"sdk transform {statistics.median(r['seconds'] for r in out['sdk']):.1f} s for {out['sdk'][0]['lines']:,} "
         f"lines; our parse stage {statistics.median(r['seconds'] for r in out['parse']):.1f} s for {lines:,}")
    out["wall_s"] = time.monotonic() - started
    return out


_ABOUT = (
    "Shapes: `generated` is our generator's file (bench/snowplow_child.py; visitors keep their derived contexts, "
    "page pings repeat their page's contexts, as real traffic does), `distinct` the same events with every "
    "derived-contexts text made unique (the worst case for the loader's per-chunk memo). On one throw-away "
    "embedded PostgreSQL, rounds alternate who goes first: **bare** = one client `COPY` of the file into a "
    "131-column all-text table (`FORMAT csv`, tab delimiter, a quote character that never occurs; the ceiling); "
    "**ours** = `airflow_osds.snowplow.loader.load` into an empty `atomic` schema, each run in a fresh process "
    "(read, type checks, Iglu validation of every entity, shredding into the entity tables, typed COPY into "
    "`atomic.events` and 3–5 entity tables per event, ledger). The SDK 0.2.3's `transform` runs in its own "
    "virtualenv; **our parse stage** is the loader's chunk parser alone (no database), the like-for-like "
    "counterpart of `transform` (which validates nothing)."
)


def _cpu_line(shape: str, runs: list[dict[str, Any]]) -> str:
    if not all("cpu_s" in r for r in runs):
        return f"{shape} n/a"
    parts = {part: statistics.median(r["cpu_s"][part] for r in runs) for part in ("helper", "loader", "backend")}
    total, wall = sum(parts.values()), statistics.median(r["seconds"] for r in runs)
    return (f"{shape} {parts['helper']:.1f} + {parts['loader']:.1f} + {parts['backend']:.1f} = {total:.1f} s in "
            f"{wall:.1f} s ({total / wall:.2f} cores busy)")


def _rates(result: dict[str, Any], shape: str, side: str) -> list[float]:
    return [result["lines"] / r["seconds"] for r in result["shapes"][shape][side]]


def _sdk_rates(result: dict[str, Any]) -> list[float]:
    return [r["lines"] / r["seconds"] for r in result["sdk"]]


def snowplow_entries(result: dict[str, Any], *, command: str, date: str, commit: str) -> list[tuple[dict[str, Any], str]]:
    """results.json entries, each with the issue's target it checks."""
    rows: list[tuple[str, float, float, str, str, str]] = []
    for shape in SHAPES:
        ours = statistics.median(_rates(result, shape, "ours"))
        rows.append((f"snowplow.load.{shape}.vs_bare_copy", ours, statistics.median(_rates(result, shape, "bare")),
                     ">= 0.5", "events/s", "at least 50 % of the bare-COPY rate (aim 80 %)"))
        rows.append((f"snowplow.load.{shape}.vs_sdk_transform", ours, statistics.median(_sdk_rates(result)),
                     ">= 2", "events/s", "at least 2× the SDK's pure-Python transform"))
    small, large = (result["rss"][str(n)]["maxrss_kb"] / 1024 for n in (result["lines"], result["rss_lines"]))
    rows.append((f"snowplow.peak_rss.{result['rss_lines'] // 1000}k_vs_{result['lines'] // 1000}k", large, small,
                 "<= 1.1", "MiB", "peak memory independent of file size"))
    out = []
    for rid, ours, theirs, target, unit, source in rows:
        ratio = ours / theirs
        op, bound = target.split()
        met = ratio >= float(bound) if op == ">=" else ratio <= float(bound)
        out.append(({"id": rid, "ours": round(ours, 3), "theirs": round(theirs, 3), "unit": unit,
                     "ratio": round(ratio, 4), "target": target, "met": met, "command": command, "date": date,
                     "commit": commit}, source))
    return out


def snowplow_section(meta: dict[str, str], result: dict[str, Any] | None, rows: list[tuple[dict[str, Any], str]],
                     error: str | None) -> str:
    out = ["## Snowplow: our full load vs a bare COPY of the same file and the Snowplow SDK's transform", "",
           meta_line(meta), ""]
    if not result:
        return "\n".join(out + [f"n/a: {error}", ""])
    n = result["lines"]
    out += [_ABOUT, "",
            f"{n:,} events per file (plain TSV: generated {result['bytes']['generated'] / 1e6:,.0f} MB, distinct "
            f"{result['bytes']['distinct'] / 1e6:,.0f} MB), PostgreSQL {result['pg_version']} (embedded, default "
            f"settings), {result['reps']} round(s); the part took {result['wall_s'] / 60:.1f} min.", "",
            "| shape | bare COPY | ours (full load) | ours ÷ bare | our peak RSS (loader + parsing helper) |", "|---|---:|---:|---:|---:|"]
    for shape in SHAPES:
        bare, ours = Stat.of(_rates(result, shape, "bare")), Stat.of(_rates(result, shape, "ours"))
        rss = Stat.of([r["maxrss_kb"] for r in result["shapes"][shape]["ours"]])
        out.append(f"| {shape} | {bare._fmt(1, 'events/s')} | {ours._fmt(1, 'events/s')} | "
                   f"{ours.median / bare.median:.2f} | {rss.mib()} |")
    sdk = Stat.of(_sdk_rates(result))
    parse = Stat.of([n / r["seconds"] for r in result["parse"]])
    out += ["", f"SDK 0.2.3 `transform` alone (no validation, no database), the first {result['sdk'][0]['lines']:,} "
            f"lines of the generated file: {sdk._fmt(1, 'events/s')}. Our parse stage alone on the generated file: "
            f"{parse._fmt(1, 'events/s')} ({parse.median / sdk.median:.2f}× the SDK).", "",
            "Peak RSS of our load (the loader's process plus its parsing helper's) by file size (gzip input, generated shape): " + ", ".join(
                f"{int(k):,} events {v['maxrss_kb'] / 1024:,.0f} MiB ({int(k) / v['seconds']:,.0f} events/s)"
                for k, v in result["rss"].items()) + ".", "",
            "CPU of our load (median seconds over the rounds; the parsing helper's, the loader's process's and its "
            "PostgreSQL backend's), against its wall time: " + "; ".join(
                _cpu_line(shape, result["shapes"][shape]["ours"]) for shape in SHAPES) + ".", "",
            "Medians (min–max) over the rounds.", "", "### Targets", ""]
    sources = {e["id"]: src for e, src in rows}
    out += targets_table([e for e, _ in rows], "checks", lambda e: sources[e["id"]])
    return "\n".join(out).rstrip() + "\n"
