"""Superset cache warm-up: 40 charts warmed 8 at a time against the same charts warmed one by one, in the
same run, on a real Superset 6.1 over a warehouse that takes ~200 ms per query.

Warehouse: a throw-away embedded PostgreSQL, ``bench.sales`` (20,000 rows: region, product, channel,
day, amount) and ``--superset-views`` views over it, ``bench.slow_<k>``, each
``SELECT … FROM bench.sales WHERE (SELECT true FROM pg_sleep(0.2))``: the sleep is an init plan, run once
per query, so every chart query waits ~200 ms in the warehouse as a real one waits for a remote warehouse
(concurrency exists to overlap that wait; this machine's 2 cores cannot show it on CPU-bound queries).
Superset: ``airflow_osds.superset.LocalSuperset`` under gunicorn, as production serves it: by default
8 sync workers (``--superset-workers 8 --superset-threads 1``), a process per concurrent warm-up; the sync
worker answers one request per connection, so each request is accepted by a free worker. (Tried while
writing this, 2026-12-02, 2 rounds each: 4 gthread workers × 2 threads gave 3.6–4.6×, 8 sync workers
4.4–5.6×; likely because the client's 8 keep-alive connections stay with the gthread worker that accepted
them, and one holding 3 or 4 of them queues requests behind its 2 threads. SQLite's WAL mode for the
metadata database made no measurable difference.) The data cache is a FileSystemCache shared by the
workers, the metadata database SQLite (production has PostgreSQL or MySQL). One dataset per view; chart
``i`` is a table chart on view ``i mod views``, grouped by one of four columns with a ``row_limit`` of
``100 + i``, so every chart has its own query and cache key.

* Every warm-up is ``airflow_osds.superset.refresh.warm`` (``PUT /api/v1/chart/warm_up_cache`` per chart,
  which runs the chart's saved query context with ``force=True``: the warehouse is queried every time, the
  cache overwritten), one ``SupersetClient`` (one login, one CSRF token) shared by the threads.
* One unmeasured warm-up of every chart first (each worker's first requests load code and open pools).
* Per round, in a rotating order: the 40 charts **serially** (``concurrency=1``), at **concurrency 8**
  (the issue's shape) and at concurrency 4 (informational); then the 80-chart set (``--superset-charts-large``)
  serially and at concurrency 8 (the same target, another input), alternating.
* Checked for every run: each chart's result is ok (no ``viz_error``), and no warm-up took less than the
  warehouse's 200 ms (a faster one was not queried); after the rounds, the next ``/api/v1/chart/{id}/data/``
  of a chart is served from the cache.
* CPU a chart, per run ÷ the charts warmed: user + system time of Superset's processes (``/proc/<pid>/stat``:
  gunicorn's master and workers), of PostgreSQL's (the postmaster's exited children: Superset opens a
  connection, so a backend, per query), of this benchmark's process (the client threads), and the whole
  machine's non-idle time (``/proc/stat``), which is also given as how busy the 2 cores were.
* Informational: the same 40 charts on the single-process dev server (``superset run --with-threads``, the
  default of ``LocalSuperset``), ``--superset-dev-reps`` rounds, serially and at concurrency 8, alternating.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from envs import WORK, ChildFailed  # noqa: E402
from sections import meta_line, targets_table  # noqa: E402
from stats import Stat  # noqa: E402
from targets import met  # noqa: E402

__all__ = ["measure_superset", "superset_entries", "superset_section"]

VS_SERIAL = ">= 4"
LATENCY_S = 0.2
COLUMNS = ("region", "product", "channel", "day")
_TICK = os.sysconf("SC_CLK_TCK")


def _log(message: str) -> None:
    print(f"bench: superset: {message}", file=sys.stderr, flush=True)


def _warehouse(conn: Any, views: int) -> None:
    conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
    conn.execute("CREATE SCHEMA bench")
    conn.execute("""CREATE TABLE bench.sales AS SELECT
                        (ARRAY['north', 'south', 'east', 'west'])[1 + i % 4] AS region,
                        'product ' || (i % 50) AS product, (ARRAY['web', 'store', 'partner'])[1 + i % 3] AS channel,
                        DATE '2026-01-01' + (i % 365) AS day, (i % 1000) * 1.5 AS amount
                    FROM generate_series(1, 20000) AS i""")
    conn.execute("ANALYZE bench.sales")
    for k in range(views):
        conn.execute(f"CREATE VIEW bench.slow_{k} AS SELECT region, product, channel, day, amount "
                     f"FROM bench.sales WHERE (SELECT true FROM pg_sleep({LATENCY_S}))")


def _query_latency(conn: Any) -> float:
    """One query of a view, timed in the warehouse: the latency every chart query pays at least."""
    begun = time.perf_counter()
    conn.execute("SELECT region, count(*) FROM bench.slow_0 GROUP BY region").fetchall()
    return time.perf_counter() - begun


def _chart(client: Any, dataset_id: int, name: str, column: str, row_limit: int) -> int:
    params = {"viz_type": "table", "datasource": f"{dataset_id}__table", "query_mode": "aggregate",
              "groupby": [column], "metrics": ["count"], "row_limit": row_limit, "adhoc_filters": []}
    query_context = {"datasource": {"id": dataset_id, "type": "table"}, "force": False,
                     "queries": [{"columns": [column], "metrics": ["count"], "row_limit": row_limit, "filters": [],
                                  "extras": {"having": "", "where": ""}, "orderby": []}],
                     "form_data": params, "result_format": "json", "result_type": "full"}
    return client.post("/api/v1/chart/", {
        "slice_name": name, "viz_type": "table", "datasource_id": dataset_id, "datasource_type": "table",
        "params": json.dumps(params), "query_context": json.dumps(query_context)})["id"]


def _charts(client: Any, uri: str, views: int, count: int) -> list[Any]:
    from airflow_osds.superset.refresh import ChartRef

    database = client.post("/api/v1/database/", {"database_name": "bench_warehouse", "sqlalchemy_uri": uri})["id"]
    datasets = [client.post("/api/v1/dataset/", {"database": database, "schema": "bench",
                                                 "table_name": f"slow_{k}"})["id"] for k in range(views)]
    out = []
    for i in range(count):
        name = f"bench chart {i:03d}"
        chart_id = _chart(client, datasets[i % views], name, COLUMNS[i % len(COLUMNS)], 100 + i)
        out.append(ChartRef(chart_id, name, f"bench.slow_{i % views}"))
    return out


def _cpu_seconds(pids: list[int], *, children: bool = False) -> float:
    """User + system CPU of ``pids`` (with ``children``: also of their exited children, as PostgreSQL's
    postmaster accumulates its backends')."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if children:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / _TICK


def _machine_busy_seconds() -> float:
    """CPU time every core spent not idle (``/proc/stat``), summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICK  # without idle and iowait


def _cpu_sample(server_pids: list[int], postmaster: int) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"superset": _cpu_seconds(server_pids), "postgres": _cpu_seconds([postmaster], children=True),
            "client": usage.ru_utime + usage.ru_stime, "machine": _machine_busy_seconds()}


def _run(server: Any, postmaster: int, client: Any, charts: list[Any], concurrency: int,
         label: str) -> dict[str, float]:
    from airflow_osds.superset.refresh import warm

    pids = server.server_pids()
    before = _cpu_sample(pids, postmaster)
    begun = time.perf_counter()
    results = warm(client, charts, concurrency=concurrency)
    wall = time.perf_counter() - begun
    after = _cpu_sample(pids, postmaster)
    cpu = {k: after[k] - before[k] for k in after}
    failed = [r for r in results if not r.ok]
    if failed:
        raise ChildFailed(f"{label}: {len(failed)} of {len(charts)} warm-ups failed, e.g. {failed[0].error}")
    fastest = min(r.seconds for r in results)
    if fastest < LATENCY_S:
        raise ChildFailed(f"{label}: a warm-up took {fastest * 1000:.0f} ms, less than the warehouse's "
                          f"{LATENCY_S * 1000:.0f} ms: it did not query the warehouse")
    seconds = [r.seconds for r in results]
    return {"wall_s": wall, "per_chart_s": statistics.median(seconds), "slowest_chart_s": max(seconds),
            **{f"{k}_cpu_per_chart_s": v / len(charts) for k, v in cpu.items()},
            "machine_busy": cpu["machine"] / wall / len(os.sched_getaffinity(0))}


def _check_cached(client: Any, chart: Any) -> None:
    data = client.get(f"/api/v1/chart/{chart.id}/data/")
    if data["result"][0].get("is_cached") is not True:
        raise ChildFailed(f"after the warm-ups, chart {chart.id}'s data was not served from the cache")


def _rounds(server: Any, postmaster: int, client: Any, sets: dict[str, list[Any]], plan: list[tuple[str, int]],
            reps: int, label: str) -> dict[str, list[dict[str, float]]]:
    """``reps`` rounds of ``plan`` (chart set, concurrency), rotated each round; the runs by ``set/c<n>``."""
    runs: dict[str, list[dict[str, float]]] = {f"{s}/c{c}": [] for s, c in plan}
    for round_ in range(reps):
        shift = round_ % len(plan)
        for set_name, concurrency in plan[shift:] + plan[:shift]:
            key = f"{set_name}/c{concurrency}"
            run = _run(server, postmaster, client, sets[set_name], concurrency, f"{label} round {round_} {key}")
            runs[key].append(run)
            _log(f"{label} round {round_} {key}: {run['wall_s']:.2f} s ({run['per_chart_s'] * 1000:.0f} ms a chart; "
                 "CPU a chart: " + ", ".join(f"{k} {run[f'{k}_cpu_per_chart_s'] * 1000:.0f} ms"
                                             for k in ("superset", "postgres", "client", "machine"))
                 + f"; cores {run['machine_busy'] * 100:.0f}% busy)")
    return runs


def measure_superset(reps: int, charts: int, large: int, views: int, workers: int, threads: int,
                     dev_reps: int) -> dict[str, Any]:
    from airflow_osds.embedded import EmbeddedPostgres
    from airflow_osds.exceptions import OsdsError
    from airflow_osds.superset import LocalSuperset
    from airflow_osds.superset.client import SupersetClient

    root = WORK / "superset"
    postgres = EmbeddedPostgres(root / "postgres")
    postgres.start()
    out: dict[str, Any] = {"charts": charts, "large": large, "views": views, "workers": workers, "threads": threads}
    try:
        postgres.create_database("bench")
        with postgres.connect("bench", autocommit=True) as conn:
            _warehouse(conn, views)
            out["query_latency_s"] = statistics.median(_query_latency(conn) for _ in range(5))
        uri = postgres.uri("bench", driver="psycopg2")
        postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
        _log(f"a view query takes {out['query_latency_s'] * 1000:.0f} ms in the warehouse")
        servers = [("gunicorn", workers, reps)] + ([("dev", 1, dev_reps)] if dev_reps > 0 else [])
        for kind, n_workers, n_reps in servers:
            server = LocalSuperset(root / f"server-{kind}", workers=n_workers, threads=threads)
            server.start()
            out[f"{kind}_start_s"] = server.timings["server_healthy"]
            _log(f"{kind} server healthy in {server.timings['server_healthy']:.1f} s ({len(server.server_pids())} "
                 f"processes)")
            try:
                with SupersetClient(server.base_url, *server.admin, timeout=300) as client:
                    every = _charts(client, uri, views, max(charts, large) if kind == "gunicorn" else charts)
                    sets = {"small": every[:charts], "large": every[:large]}
                    _run(server, postmaster, client, every, 8, f"{kind} warm-up")  # unmeasured
                    if kind == "gunicorn":
                        plan = [("small", 1), ("small", 8), ("small", 4)]
                        out["runs"] = _rounds(server, postmaster, client, sets, plan, n_reps, kind)
                        if large:
                            plan = [("large", 1), ("large", 8)]
                            out["runs"].update(_rounds(server, postmaster, client, sets, plan, n_reps, kind))
                    else:
                        plan = [("small", 1), ("small", 8)]
                        out["dev_runs"] = _rounds(server, postmaster, client, sets, plan, n_reps, kind)
                    _check_cached(client, every[0])
                out[f"{kind}_rss_mib"] = (server.rss_bytes() or 0) / 2**20
            finally:
                server.stop()
        (root / "result.json").write_text(json.dumps(out, indent=2))  # the raw numbers, kept with the work files
        return out
    except OsdsError as exc:  # Superset or its API refused: the part fails, the run goes on
        raise ChildFailed(str(exc)) from exc
    finally:
        postgres.stop()


def _median(runs: list[dict[str, float]], key: str = "wall_s") -> float:
    return statistics.median(r[key] for r in runs)


def superset_entries(result: dict[str, Any], *, command: str, date: str,
                     commit: str) -> list[tuple[dict[str, Any], str]]:
    runs = result["runs"]
    shapes = [("small", result["charts"], "the issue's shape")]
    if "large/c1" in runs:
        shapes.append(("large", result["large"], "another input, the same target"))
    out = []
    for set_name, n, what in shapes:
        serial, parallel = _median(runs[f"{set_name}/c1"]) * 1000, _median(runs[f"{set_name}/c8"]) * 1000
        out.append(({"id": f"superset.warm_up.{n}_charts.c8_vs_serial", "ours": round(parallel, 3),
                     "theirs": round(serial, 3), "unit": "ms", "ratio": round(serial / parallel, 4),
                     "target": VS_SERIAL, "met": met(serial / parallel, VS_SERIAL), "command": command,
                     "date": date, "commit": commit},
                    f"{n} charts at ~{LATENCY_S * 1000:.0f} ms a query: concurrency 8 vs one by one, ≥ 4× faster "
                    f"({what})"))
    return out


def superset_section(meta: dict[str, str], result: dict[str, Any] | None, rows: list[tuple[dict[str, Any], str]],
                     error: str | None) -> str:
    out = ["## Superset cache warm-up: 40 charts at concurrency 8 vs one by one, ~200 ms a warehouse query", "",
           meta_line(meta), ""]
    if not result:
        return "\n".join(out + [f"n/a: {error}", ""])
    doc = (__doc__ or "").split("\n\n", 1)[1].strip()
    sources = {e["id"]: source for e, source in rows}
    server = (f"gunicorn, {result['workers']} workers × {result['threads']} thread(s) "
              f"(healthy {result['gunicorn_start_s']:.0f} s after spawning, {result['gunicorn_rss_mib']:,.0f} MiB RSS "
              f"in all after the runs)")
    out += [doc, "", f"This run: {result['views']} views, a view query {result['query_latency_s'] * 1000:.0f} ms in "
            f"the warehouse (median of 5, psycopg); {server}.", "",
            *targets_table([e for e, _ in rows], "what", lambda e: sources[e["id"]]), "",
            "Per series, medians over the rounds: the wall time of the whole warm-up (range), a chart's warm-up "
            "(its `WarmResult.seconds`: median / slowest of the run), the CPU a chart costs (Superset's processes, "
            "PostgreSQL's backends, this benchmark's client, the whole machine) and how busy the machine's cores were.",
            "", "| server | charts | concurrency | wall | vs serial | a chart: median / slowest | CPU a chart: "
            "superset / postgres / client / machine | cores busy |", "|---|---:|---:|---|---:|---|---|---:|"]

    def lines(label: str, runs: dict[str, list[dict[str, float]]], sizes: dict[str, int]) -> None:
        for key, series in runs.items():
            set_name, _, c = key.partition("/")
            wall = Stat.of([r["wall_s"] for r in series])
            serial = _median(runs[f"{set_name}/c1"])
            cpu = " / ".join(f"{_median(series, f'{k}_cpu_per_chart_s') * 1000:.0f}"
                             for k in ("superset", "postgres", "client", "machine"))
            out.append(f"| {label} | {sizes[set_name]} | {c[1:]} | {wall.median:.2f} s "
                       f"({wall.low:.2f}–{wall.high:.2f}) | {serial / wall.median:.2f}× | "
                       f"{_median(series, 'per_chart_s') * 1000:.0f} / {_median(series, 'slowest_chart_s') * 1000:.0f}"
                       f" ms | {cpu} ms | "
                       f"{_median(series, 'machine_busy') * 100:.0f} % |")

    sizes = {"small": result["charts"], "large": result["large"]}
    lines(f"gunicorn {result['workers']}×{result['threads']}", result["runs"], sizes)
    if result.get("dev_runs"):
        lines("dev server (one process)", result["dev_runs"], sizes)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    # python bench/superset.py [reps [workers [threads]]]: the 40-chart shape only, printed, nothing recorded.
    reps, workers, threads = ([int(a) for a in sys.argv[1:4]] + [1, 8, 1][len(sys.argv[1:4]):])
    measured = measure_superset(reps, 40, 0, 10, workers, threads, 0)
    print(json.dumps(measured, indent=2))
