"""A generated dbt project for shape E (2,000 models by default), and its manifest from a real ``dbt parse``.

Layout (``n_models`` models, ``n_seeds`` seeds, no packages.yml):

* ``seeds/raw_<k>.csv`` — small tables, ``id`` unique;
* ``models/staging/<source>/stg_*.sql`` — 20 % of the models, each reads one seed;
* ``models/intermediate/<domain>/int_*.sql`` — 40 %, fan-in 2–3 from staging/earlier intermediate;
* ``models/marts/<domain>/fct_*.sql`` — 40 %, fan-in 2–3 from intermediate/earlier marts;
* one ``_schema.yml`` per folder: every model has ``not_null(id)``, every other one also
  ``unique(id)`` (1–2 tests per model, all passing on the generated data).

Deterministic (fixed random seed); the manifest is produced once and re-used while the
generator's inputs (this file, the parameters, the dbt version) are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DbtProject", "ensure_project", "DBT"]

DBT = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "dbt"
PROJECT_NAME = "bench"
PROFILE_NAME = "bench"
_STAMP = ".bench-generated"
_PROFILE = """bench:
  target: dev
  outputs:
    dev:
      type: postgres
      host: localhost
      port: 5432
      user: x
      password: x
      dbname: x
      schema: public
      threads: 4
"""
STAGING_FOLDERS = ("crm", "billing", "web", "support")
INT_FOLDERS = ("customers", "orders", "finance")
MART_FOLDERS = ("finance", "marketing", "product", "ops")


@dataclass(frozen=True)
class DbtProject:
    path: Path
    manifest: Path
    models: int
    seeds: int
    tests: int
    model_files: list[str]  # models/…/x.sql in topological order (parents first)
    parse_s: float | None  # dbt parse wall time when it ran now, None when cached


def _layer_sizes(n: int) -> tuple[int, int, int]:
    staging = max(1, n // 5)
    intermediate = max(1, (n - staging) // 2)
    return staging, intermediate, n - staging - intermediate


def _models(n_models: int, n_seeds: int) -> list[tuple[str, str, list[str], bool]]:
    """(relative path, name, parents (models or seeds), has a unique test) in topological order."""
    rnd = random.Random(4)
    n_stg, n_int, n_mart = _layer_sizes(n_models)
    out: list[tuple[str, str, list[str], bool]] = []
    stg: list[str] = []
    for i in range(n_stg):
        folder = STAGING_FOLDERS[i % len(STAGING_FOLDERS)]
        name = f"stg_{folder}_{i:04d}"
        out.append((f"models/staging/{folder}/{name}.sql", name, [f"raw_{i % n_seeds:02d}"], i % 2 == 0))
        stg.append(name)
    ints: list[str] = []
    for i in range(n_int):
        folder = INT_FOLDERS[i % len(INT_FOLDERS)]
        name = f"int_{folder}_{i:04d}"
        pool = stg + ints[-50:]  # recent intermediates: a layered, not fully random, graph
        parents = rnd.sample(pool, min(len(pool), rnd.choice((2, 3))))
        out.append((f"models/intermediate/{folder}/{name}.sql", name, parents, i % 2 == 0))
        ints.append(name)
    marts: list[str] = []
    for i in range(n_mart):
        folder = MART_FOLDERS[i % len(MART_FOLDERS)]
        name = f"fct_{folder}_{i:04d}"
        pool = ints + marts[-30:]
        parents = rnd.sample(pool, min(len(pool), rnd.choice((2, 3))))
        out.append((f"models/marts/{folder}/{name}.sql", name, parents, i % 2 == 0))
        marts.append(name)
    return out


def _model_sql(parents: list[str]) -> str:
    first, rest = parents[0], parents[1:]
    amount = " + ".join(["p0.amount"] + [f"p{k + 1}.amount" for k in range(len(rest))])
    lines = [f"select p0.id, p0.customer_id, {amount} as amount", f"from {{{{ ref('{first}') }}}} as p0"]
    lines += [f"join {{{{ ref('{p}') }}}} as p{k + 1} on p{k + 1}.id = p0.id" for k, p in enumerate(rest)]
    return "\n".join(lines) + "\n"


def write_project(root: Path, n_models: int, n_seeds: int) -> list[tuple[str, str, list[str], bool]]:
    if root.exists():
        shutil.rmtree(root)
    (root / "seeds").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        f"name: {PROJECT_NAME}\nversion: '1.0'\nconfig-version: 2\nprofile: {PROFILE_NAME}\n"
        "model-paths: [models]\nseed-paths: [seeds]\n"
        f"models:\n  {PROJECT_NAME}:\n    +materialized: table\n"
    )
    for k in range(n_seeds):
        rows = ["id,customer_id,amount"] + [f"{i},{(i * 7 + k) % 13},{(i * 31 + k) % 100}.5" for i in range(1, 11)]
        (root / "seeds" / f"raw_{k:02d}.csv").write_text("\n".join(rows) + "\n")
    models = _models(n_models, n_seeds)
    schemas: dict[Path, list[str]] = {}
    for rel, name, parents, unique in models:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_model_sql(parents))
        tests = "          - not_null\n" + ("          - unique\n" if unique else "")
        schemas.setdefault(path.parent, []).append(
            f"  - name: {name}\n    columns:\n      - name: id\n        data_tests:\n{tests}"
        )
    for folder, entries in schemas.items():
        (folder / "_schema.yml").write_text("version: 2\nmodels:\n" + "".join(entries))
    return models


def _refresh_fingerprint(root: Path, target: Path) -> None:
    """airflow-osds refuses a manifest without the fingerprint `osds dbt-parse` writes beside it (a
    stale-manifest check); written here with the factory's own functions, on every run, so a change to
    how the factory fingerprints a project never leaves the benchmark with a stale one."""
    try:
        from airflow_osds.dbt.fingerprint import project_fingerprint, write_fingerprint
    except ImportError:
        return
    write_fingerprint(target, project_fingerprint(root), target_schema="public")  # _PROFILE's schema


def _dbt_parse(root: Path) -> float:
    import time

    with tempfile.TemporaryDirectory(prefix="bench-dbt-profile-") as profiles:
        Path(profiles, "profiles.yml").write_text(_PROFILE)
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false"}
        t0 = time.monotonic()
        proc = subprocess.run([str(DBT), "parse", "--project-dir", str(root), "--profiles-dir", profiles],
                              env=env, capture_output=True, text=True)
        parse_s = time.monotonic() - t0
    if proc.returncode != 0 or not (root / "target" / "manifest.json").exists():
        raise RuntimeError(f"dbt parse failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return parse_s


def _dbt_version() -> str:
    try:
        from importlib.metadata import version  # the project .venv runs this module

        return version("dbt-core")
    except Exception:  # noqa: BLE001
        return "unknown"


def ensure_project(root: Path, n_models: int = 2000, n_seeds: int = 40, *, parse: bool = True) -> DbtProject:
    """Generate the project into ``root`` and ``dbt parse`` it, unless the same inputs already did."""
    models = _models(n_models, n_seeds)
    key = hashlib.sha256(json.dumps([Path(__file__).read_text(), n_models, n_seeds, _dbt_version(), parse]).encode()).hexdigest()
    stamp = root / _STAMP
    manifest = root / "target" / "manifest.json"
    parse_s = None
    if not (stamp.exists() and stamp.read_text() == key and (manifest.exists() or not parse)):
        write_project(root, n_models, n_seeds)
        if parse:
            parse_s = _dbt_parse(root)
        stamp.write_text(key)
    if parse:
        _refresh_fingerprint(root, manifest.parent)
    n_tests = sum(2 if unique else 1 for *_, unique in models)
    return DbtProject(path=root, manifest=manifest, models=len(models), seeds=n_seeds, tests=n_tests,
                      model_files=[rel for rel, *_ in models], parse_s=parse_s)


if __name__ == "__main__":
    import sys

    work = Path(__file__).resolve().parent / ".work" / "dbt"
    p = ensure_project(work / "project")
    print(p.models, p.seeds, p.tests, p.parse_s, file=sys.stderr)
