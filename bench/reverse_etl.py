"""Reverse ETL: a sync of a 1M-row source with 1% changed (the diff in the warehouse, then only the changes
delivered) against a naive full send of every row, in the same run, to the same local HTTP sink; and the
sync's peak RSS on 100k against 1M rows.

Source: ``bench.users`` in a throw-away embedded PostgreSQL (``--retl-rows`` rows: bigint key, email,
name, plan, a numeric and an integer), mapped to 5 fields. Destination: the generic ``http`` destination
(``airflow_osds.reverse_etl.destinations.http``, its default batch of 100 records, no auth) posting to
bench/reverse_etl_sink.py, a stdlib HTTP/1.1 server in its own process that parses every body and counts
the records.

* **first run**: ``run_sync`` with no state: every row is created (informational).
* Per round, 1% of the rows change (``plan`` of the ids ``≡ round (mod 100)``), then in alternating order:
  * **ours**: ``run_sync`` (``airflow_osds.reverse_etl.sync``) with the hook's two connections: the diff in
    SQL against the delivered state, the changes streamed from a server-side cursor, delivered, the
    acknowledged keys recorded on the second connection;
  * **full send**: what a sync without state does every run: every row read with the same mapping
    (a server-side cursor, the same jsonb mapping) and posted in the destination's batches.
  Checked after each: the sink received exactly the rows expected (the changed ones, or all of them),
  and ours reported that many updates. Informational, after both: the diff alone (``diff.summary``) on
  the table and on a copy without its primary key (a dbt model's table has none, so the key check's
  extra pass runs), each finding nothing left to send.
* **peak RSS**: a fresh interpreter per size (``--retl-rss-rows`` and a tenth of it) runs a first sync
  and a 1%-changed sync into the same sink; its ``ru_maxrss`` (the sink and PostgreSQL are other processes).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from envs import PROJECT_PYTHON, REPO, WORK, ChildFailed  # noqa: E402
from sections import meta_line, targets_table  # noqa: E402
from stats import Stat  # noqa: E402
from targets import met  # noqa: E402

__all__ = ["measure_reverse_etl", "reverse_etl_entries", "reverse_etl_section"]

SINK = BENCH_DIR / "reverse_etl_sink.py"
VS_FULL_SEND = ">= 20"
RSS_FLAT = "<= 1.3"
FIELDS = ("email", "full_name", "plan", "lifetime_value", "sessions")


def _log(message: str) -> None:
    print(f"bench: reverse-etl: {message}", file=sys.stderr, flush=True)


class _Sink:
    """bench/reverse_etl_sink.py in its own process."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        port_file = root / "sink.port"
        port_file.unlink(missing_ok=True)
        self.process = subprocess.Popen([sys.executable, str(SINK), str(port_file)])
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise ChildFailed("the benchmark's HTTP sink did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"

    def received(self) -> int:
        import httpx

        return int(httpx.get(f"{self.url}/count").json()["records"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _create_source(conn: Any, table: str, rows: int) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"""CREATE TABLE {table} (id bigint PRIMARY KEY, email text, full_name text, plan text,
                     lifetime_value numeric(12, 2), sessions integer)""")
    conn.execute(f"""INSERT INTO {table} SELECT i, 'user' || i || '@example.com', 'User number ' || i,
                     (ARRAY['free', 'pro', 'enterprise'])[1 + i %% 3], (i %% 10007) * 1.25, i %% 97
                     FROM generate_series(1, %s) AS i""", (rows,))
    conn.execute(f"ANALYZE {table}")


def _change(conn: Any, table: str, round_: int) -> int:
    return conn.execute(f"UPDATE {table} SET plan = plan || '+' WHERE id %% 100 = %s", (round_ % 100,)).rowcount


def _spec(table: str, sync_id: str) -> Any:
    from airflow_osds.reverse_etl.spec import SourceSpec, SyncSpec

    return SyncSpec(sync_id=sync_id, source=SourceSpec(table=table), key="id", fields={f: f for f in FIELDS})


def _destination(url: str) -> Any:
    from airflow_osds.reverse_etl.destinations.http import HttpDestination, HttpDestinationConfig

    return HttpDestination(HttpDestinationConfig(base_url=url, auth_type="none"), "/records",
                           object_name="sink/records")


def _ours(conn: Any, table: str, sync_id: str, url: str, record_conn: Any) -> tuple[float, Any]:
    from airflow_osds.reverse_etl.sync import run_sync

    begun = time.perf_counter()
    report = run_sync(conn, _spec(table, sync_id), _destination(url), say=lambda line: None, record_conn=record_conn)
    return time.perf_counter() - begun, report


def _full_send(conn: Any, table: str, url: str) -> float:
    """Every row, mapped as the sync maps it, posted in the destination's batches."""
    from airflow_osds.reverse_etl.destinations.base import Change

    destination = _destination(url)
    mapping = ", ".join(f"'{f}', {f}" for f in FIELDS)
    begun = time.perf_counter()
    try:
        with conn.transaction():
            cursor = conn.cursor("bench_full_send")
            cursor.execute(f"SELECT id::text, jsonb_build_object({mapping})::text FROM {table}")
            while rows := cursor.fetchmany(destination.batch_size):
                destination.send([Change(key, "update", json.loads(payload)) for key, payload in rows])
            cursor.close()
    finally:
        destination.close()
    return time.perf_counter() - begun


def measure_reverse_etl(reps: int, rows: int, rss_rows: int) -> dict[str, Any]:
    from airflow_osds.embedded import EmbeddedPostgres
    from airflow_osds.reverse_etl.diff import forget

    root = WORK / "reverse-etl"
    postgres = EmbeddedPostgres(root / "postgres")
    postgres.start()
    sink = _Sink(root)
    try:
        postgres.create_database("bench")
        out: dict[str, Any] = {"rows": rows, "changed": rows // 100, "rounds": [], "rss": {}}
        # The hook's two connections: one streams the changes, the other records the answers.
        with postgres.connect("bench", autocommit=True) as conn, \
                postgres.connect("bench", autocommit=True) as record_conn:
            _log(f"source of {rows:,} rows")
            _create_source(conn, "bench.users", rows)
            forget(conn, "bench")
            before = sink.received()
            first_s, report = _ours(conn, "bench.users", "bench", sink.url, record_conn)
            if report.created != rows or sink.received() - before != rows:
                raise ChildFailed(f"first run: created {report.created:,}, sink got {sink.received() - before:,}")
            out["first_run_s"] = first_s
            _log(f"first run {first_s:.1f} s")
            for round_ in range(reps):
                changed = _change(conn, "bench.users", round_)
                timings: dict[str, float] = {}
                for mode in (("ours", "full") if round_ % 2 == 0 else ("full", "ours")):
                    before = sink.received()
                    if mode == "ours":
                        timings["ours"], report = _ours(conn, "bench.users", "bench", sink.url, record_conn)
                        timings["ours_diff"] = report.diff_seconds  # of ours: up to the first batch
                        expected = changed
                        if report.updated != changed:
                            raise ChildFailed(f"round {round_}: {report.updated:,} updated, {changed:,} changed")
                    else:
                        timings["full"] = _full_send(conn, "bench.users", sink.url)
                        expected = rows
                    got = sink.received() - before
                    if got != expected:
                        raise ChildFailed(f"round {round_} {mode}: the sink got {got:,} records, expected {expected:,}")
                # Informational: the diff alone (its counts), on this table and on a copy without the primary
                # key (a dbt model's table has none: the key check then runs, one more pass).
                from airflow_osds.reverse_etl import diff

                conn.execute("DROP TABLE IF EXISTS bench.users_model")
                conn.execute("CREATE TABLE bench.users_model AS SELECT * FROM bench.users")
                conn.execute("ANALYZE bench.users_model")
                for label, table in (("diff_pk", "bench.users"), ("diff_no_key", "bench.users_model")):
                    begun = time.perf_counter()
                    counts = diff.summary(conn, _spec(table, "bench"))
                    timings[label] = time.perf_counter() - begun
                    if counts.changed != 0 or counts.unchanged != rows:
                        raise ChildFailed(f"round {round_}: the diff of {table} after the sync found {counts}")
                out["rounds"].append(timings)
                _log(f"round {round_}: ours {timings['ours']:.2f} s (the diff {timings['ours_diff']:.2f} s), "
                     f"full send {timings['full']:.2f} s")
        for n in (rss_rows // 10, rss_rows):
            out["rss"][str(n)] = _rss_child(postgres, sink.url, n)
            _log(f"peak RSS at {n:,} rows: {out['rss'][str(n)] / 1024:.0f} MiB")
        (root / "result.json").write_text(json.dumps(out, indent=2))  # the raw numbers, kept with the work files
        return out
    finally:
        sink.stop()
        postgres.stop()


def _rss_child(postgres: Any, url: str, rows: int) -> int:
    args = json.dumps({"conninfo": postgres.uri("bench"), "url": url, "rows": rows})
    result = subprocess.run([str(PROJECT_PYTHON), __file__, "--rss-child", args], capture_output=True, text=True,
                            cwd=REPO, timeout=3600)
    if result.returncode != 0:
        raise ChildFailed(f"the RSS child ({rows:,} rows) exited {result.returncode}: {result.stderr[-600:]}")
    return int(result.stdout.strip().splitlines()[-1])


def _rss_main(args: dict[str, Any]) -> None:
    import psycopg

    from airflow_osds.reverse_etl.diff import forget

    rows = int(args["rows"])
    table, sync_id = f"bench.rss_{rows}", f"bench-rss-{rows}"
    with psycopg.connect(args["conninfo"], autocommit=True) as conn, \
            psycopg.connect(args["conninfo"], autocommit=True) as record_conn:
        _create_source(conn, table, rows)
        forget(conn, sync_id)
        _, first = _ours(conn, table, sync_id, args["url"], record_conn)
        changed = _change(conn, table, 0)
        _, second = _ours(conn, table, sync_id, args["url"], record_conn)
        if first.created != rows or second.updated != changed:
            raise SystemExit(f"created {first.created}, updated {second.updated} of {changed}")
        conn.execute(f"DROP TABLE {table}")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def reverse_etl_entries(result: dict[str, Any], *, command: str, date: str,
                        commit: str) -> list[tuple[dict[str, Any], str]]:
    ours = statistics.median(r["ours"] for r in result["rounds"]) * 1000
    full = statistics.median(r["full"] for r in result["rounds"]) * 1000
    small, large = (result["rss"][k] / 1024 for k in sorted(result["rss"], key=int))
    sizes = sorted(result["rss"], key=int)
    out = [
        ({"id": "reverse_etl.changed_1pct.vs_full_send", "ours": round(ours, 3), "theirs": round(full, 3), "unit": "ms",
          "ratio": round(full / ours, 4), "target": VS_FULL_SEND, "met": met(full / ours, VS_FULL_SEND),
          "command": command, "date": date, "commit": commit},
         f"{result['rows']:,} rows, {result['changed']:,} changed: diff + deliver vs a full send, ≥ 20× faster"),
        ({"id": "reverse_etl.peak_rss.large_vs_small", "ours": round(large, 1), "theirs": round(small, 1),
          "unit": "MiB", "ratio": round(large / small, 4), "target": RSS_FLAT, "met": met(large / small, RSS_FLAT),
          "command": command, "date": date, "commit": commit},
         f"peak RSS of a first and a 1%-changed sync: {int(sizes[1]):,} rows vs {int(sizes[0]):,} (flat in source size)"),
    ]
    return out


def reverse_etl_section(meta: dict[str, str], result: dict[str, Any] | None, rows: list[tuple[dict[str, Any], str]],
                        error: str | None) -> str:
    out = ["## Reverse ETL: a 1%-changed sync vs a full send, and peak RSS by source size", "", meta_line(meta), ""]
    if not result:
        return "\n".join(out + [f"n/a: {error}", ""])
    doc = (__doc__ or "").split("\n\n", 1)[1].strip()
    sources = {e["id"]: source for e, source in rows}
    out += [doc, "", *targets_table([e for e, _ in rows], "what", lambda e: sources[e["id"]]),
            "", "| series | median | range |", "|---|---:|---|"]
    out.append(f"| first run (no state: {result['rows']:,} created) | {result['first_run_s']:.2f} s | |")
    for key, label in (("ours", f"ours: {result['changed']:,} changed"),
                       ("ours_diff", "of ours: the key check and the diff, up to the first batch"),
                       ("full", f"full send: {result['rows']:,} rows"),
                       ("diff_pk", "the diff alone (counts), the table with its primary key"),
                       ("diff_no_key", "the diff alone, a copy without a key (as a dbt model's table: the key check runs)")):
        stat = Stat.of([r[key] for r in result["rounds"]])
        out.append(f"| {label} | {stat.median:.2f} s | {stat.low:.2f}–{stat.high:.2f} s |")
    paired = Stat.of([r["full"] / r["ours"] for r in result["rounds"]])  # each round's two runs, side by side
    out.append(f"| full send / ours, round by round | {paired.median:.1f}× | {paired.low:.1f}–{paired.high:.1f}× |")
    for n, kib in sorted(result["rss"].items(), key=lambda kv: int(kv[0])):
        out.append(f"| peak RSS, {int(n):,} rows | {kib / 1024:.0f} MiB | |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rss-child":
        _rss_main(json.loads(sys.argv[2]))
    else:
        reps = int(sys.argv[1]) if len(sys.argv) > 1 else 1
        rows = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
        result = measure_reverse_etl(reps, rows, rows)
        print(json.dumps(result, indent=2))
