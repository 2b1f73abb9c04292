"""One measured step of the Snowplow part (bench/snowplow_load.py), in its own process; prints one JSON line.

    python bench/snowplow_child.py generate --lines N --shape generated|distinct --out FILE [--gzip]
    python bench/snowplow_child.py bare --conninfo DSN --file FILE
    python bench/snowplow_child.py ours --conninfo DSN --file FILE --iglu DIR [--iglu DIR …]
    python bench/snowplow_child.py parse --file FILE --iglu DIR [--iglu DIR …]

``bare`` is the ceiling: the file streamed by one client ``COPY`` into a 131-column all-text table
(``FORMAT csv``, tab delimiter, a quote character that never occurs, so the JSON's backslashes stay
literal). ``ours`` is the real load: ``airflow_osds.snowplow.loader.load`` (parse, validate against
Iglu, shred, COPY, ledger), the file as a :class:`SourceFile`. Both report wall seconds and the
process's peak RSS (``ru_maxrss``; for ``ours``, plus its parsing helper's). ``parse`` is our transform stage alone, what compares with the
SDK's ``transform``: the loader's chunk parser (split, type checks, Iglu validation, shredding into
COPY lines) over the file, no database.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
_BARE_COPY = "COPY bench_raw FROM STDIN (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01', NULL '')"


def _rss_kb() -> int:
    """This process's peak RSS plus its largest finished child's: the loader and its parsing helper."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def _distinct(lines, field_index: int):  # type: ignore[no-untyped-def]
    """Every event's derived contexts made unique (a user-agent version per event): no text repeats."""
    for number, line in enumerate(lines):
        parts = line.split("\t")
        parts[field_index] = parts[field_index].replace('"agentVersion":"', f'"agentVersion":"{number}.', 1)
        yield "\t".join(parts)


def generate(args: argparse.Namespace) -> dict[str, object]:
    import gzip

    from airflow_osds.snowplow import generate as gen
    from airflow_osds.snowplow.fields import FIELD_INDEX

    started = time.perf_counter()
    lines = gen.generate(args.lines, seed=11, start=START)
    if args.shape == "distinct":
        lines = _distinct(lines, FIELD_INDEX["derived_contexts"])
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    opener = (lambda p: gzip.open(p, "wt", compresslevel=1, encoding="utf-8")) if args.gzip else (
        lambda p: open(p, "w", encoding="utf-8"))
    with opener(tmp) as out:
        for line in lines:
            out.write(line + "\n")
    tmp.rename(args.out)
    return {"seconds": time.perf_counter() - started, "bytes": args.out.stat().st_size}


def bare(args: argparse.Namespace) -> dict[str, object]:
    import psycopg

    with psycopg.connect(args.conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw (" + ", ".join(f"c{i} text" for i in range(131)) + ")")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(_BARE_COPY) as copy, open(args.file, "rb") as source:
            while block := source.read(1 << 20):
                copy.write(block)
        seconds = time.perf_counter() - started
        rows = conn.execute("SELECT count(*) FROM bench_raw").fetchone()[0]
        conn.execute("DROP TABLE bench_raw")
    return {"seconds": seconds, "rows": rows, "maxrss_kb": _rss_kb()}


def ours(args: argparse.Namespace) -> dict[str, object]:
    import psycopg

    from airflow_osds.snowplow.iglu import Resolver
    from airflow_osds.snowplow.loader import LoadOptions, load
    from airflow_osds.snowplow.sources import local_files

    resolver = Resolver.from_sources(args.iglu)
    with psycopg.connect(args.conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS atomic CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS osds_state CASCADE")
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        cpu_before = _cpu(backend)
        started = time.perf_counter()
        report = load(conn, local_files(args.file), resolver, LoadOptions(max_bad_ratio=None),
                      say=lambda message: None)
        seconds = time.perf_counter() - started
        cpu = {part: round(after - cpu_before[part], 3) for part, after in _cpu(backend).items()}
        rows = conn.execute("SELECT count(*) FROM atomic.events").fetchone()[0]
    return {"seconds": seconds, "rows": rows, "maxrss_kb": _rss_kb(), "cpu_s": cpu, "summary": report.summary()}


def _cpu(backend_pid: int) -> dict[str, float]:
    """CPU seconds so far of the loader's process, its finished children (the parsing helper) and its PostgreSQL backend.

    The backend's is read from ``/proc`` (the bench's PostgreSQL runs on this machine).
    """
    self, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    fields = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"loader": self.ru_utime + self.ru_stime, "helper": children.ru_utime + children.ru_stime,
            "backend": (int(fields[11]) + int(fields[12])) / ticks}


def parse(args: argparse.Namespace) -> dict[str, object]:
    from airflow_osds.snowplow.chunks import ChunkParser
    from airflow_osds.snowplow.iglu import Resolver
    from airflow_osds.snowplow.loader import LoadOptions

    # The loader's own parsing stage, in one process (what its parsing helper runs).
    parser = ChunkParser(Resolver.from_sources(args.iglu))
    size, good, bad, chunk = LoadOptions().chunk_lines, 0, 0, []
    started = time.perf_counter()
    with open(args.file, "rb") as source:
        for number, raw in enumerate(source, 1):
            chunk.append((number, raw))
            if len(chunk) == size:
                parsed = parser.parse(chunk, batch=True)
                good, bad, chunk = good + len(parsed.events), bad + len(parsed.bad), []
    if chunk:
        parsed = parser.parse(chunk, batch=True)
        good, bad = good + len(parsed.events), bad + len(parsed.bad)
    return {"seconds": time.perf_counter() - started, "rows": good, "bad": bad, "maxrss_kb": _rss_kb()}


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--lines", type=int, required=True)
    g.add_argument("--shape", choices=("generated", "distinct"), default="generated")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--gzip", action="store_true")
    for name in ("bare", "ours", "parse"):
        p = sub.add_parser(name)
        if name != "parse":
            p.add_argument("--conninfo", required=True)
        p.add_argument("--file", type=Path, required=True)
        if name != "bare":
            p.add_argument("--iglu", type=Path, action="append", required=True)
    args = parser.parse_args()
    result = {"generate": generate, "bare": bare, "ours": ours, "parse": parse}[args.command](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
