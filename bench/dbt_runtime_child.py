"""Runtime overhead of ``granularity: model``: one ``dbt build`` vs one ``dbt build --select path:<file>`` per model.

Usage (project .venv): dbt_runtime_child.py PROJECT_DIR MODEL_FILES_JSON REPS OUT_JSON

Runs in process through ``airflow_osds.dbt.runner.run_dbt`` against a throw-away embedded
PostgreSQL: ``dbt seed`` once, one untimed warm-up ``dbt build``, then REPS rounds of
(a) one ``dbt build --select path:models`` (threads 1 and 4) and (b) one ``dbt build
--select path:<file>`` per model in topological order (threads 1). Every invocation must
succeed. Writes the timings to OUT_JSON.
"""

import sys

sys.path.pop(0)

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def main(argv: list[str]) -> int:
    project, files_json, reps, out = Path(argv[0]), argv[1], int(argv[2]), Path(argv[3])
    files = json.loads(Path(files_json).read_text())
    from airflow_osds.dbt.profiles import PostgresTarget
    from airflow_osds.dbt.runner import run_dbt
    from airflow_osds.embedded import EmbeddedPostgres

    state = Path(tempfile.mkdtemp(prefix="bench-dbt-pg-"))
    state.chmod(0o755)
    pg = EmbeddedPostgres(state)
    try:
        t0 = time.monotonic()
        pg.start()
        pg.create_database("bench")
        pg_start_s = time.monotonic() - t0

        def dbt(command: str, select: list[str], threads: int) -> float:
            target = PostgresTarget(host="127.0.0.1", port=pg.port, user="postgres", dbname="bench", schema="public",
                                    threads=threads)
            t = time.perf_counter()
            result = run_dbt(command, project_dir=project, target=target, select=select)
            elapsed = time.perf_counter() - t
            if not result.success:
                raise SystemExit(f"dbt {command} {select} failed: {result.error or result.failed_nodes()}\n"
                                 + "\n".join(result.log_lines[-20:]))
            return elapsed

        seed_s = dbt("seed", [], 4)
        warmup_s = dbt("build", ["path:models"], 4)
        rounds = []
        for _ in range(reps):
            one_t1 = dbt("build", ["path:models"], 1)
            one_t4 = dbt("build", ["path:models"], 4)
            per_model = [dbt("build", [f"path:{f}"], 1) for f in files]
            rounds.append({"one_build_t1_s": one_t1, "one_build_t4_s": one_t4,
                           "separate_s": sum(per_model), "per_model_s": per_model})
            print(f"bench: dbt runtime round: one build {one_t1:.2f} s (threads 1), {one_t4:.2f} s (threads 4); "
                  f"{len(files)} separate builds {sum(per_model):.2f} s", file=sys.stderr, flush=True)
        out.write_text(json.dumps({"pg_start_s": pg_start_s, "seed_s": seed_s, "warmup_s": warmup_s,
                                   "models": len(files), "rounds": rounds}))
    finally:
        pg.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
