"""dbt against a real PostgreSQL: in process and from a separate virtualenv, TCP and unix socket.

One embedded server and one seeded database serve the whole module; the retry test uses
its own database so its failing build does not disturb the others.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_osds.dbt.profiles import PASSWORD_ENV_VAR, PostgresTarget, RenderedProfile
from airflow_osds.dbt.runner import DbtRunError, DbtRunResult, run_dbt
from airflow_osds.embedded import EmbeddedPostgres

from tests.conftest import login_role

from ._venv import ensure_dbt_venv

PROJECT = Path(__file__).resolve().parents[3] / "include" / "dbt" / "web_analytics"
# The password of the role dbt logs in as (see the pg fixture): known, to prove it never reaches disk or logs.
PASSWORD = "Dummy-s3cret-pw-4711"
DBT_USER = "dbt_runner"
SEED_VARS = {"use_seeds": True}
FAILING_TEST = "test.web_analytics.assert_no_future_sessions"

EXPECTED_ROWS = {
    "raw.snowplow_events": 20,
    "raw.crm_contacts": 10,  # 5 for the seed events, 5 for the demo's generated users
    "staging.stg_page_views": 16,
    "staging.stg_contacts": 10,
    "marts.sessions": 7,
    "marts.daily_page_views": 12,
    "marts.high_value_users": 2,
}


@pytest.fixture(scope="module")
def pg() -> Iterator[EmbeddedPostgres]:
    # A short path: the unix socket path must stay under ~100 bytes.
    state = Path(tempfile.mkdtemp(prefix="osds-dbt-"))
    state.chmod(0o755)  # the server may run as another system user
    server = EmbeddedPostgres(state / "pg").start()
    login_role(server, DBT_USER, PASSWORD)
    yield server
    server.destroy()
    shutil.rmtree(state, ignore_errors=True)


def tcp_target(pg: EmbeddedPostgres, dbname: str) -> PostgresTarget:
    return PostgresTarget(
        host="127.0.0.1", port=pg.port, user=DBT_USER, password=PASSWORD, dbname=dbname, schema="public",
        options={"connect_timeout": 10, "keepalives_idle": 30, "sslmode": "disable"},
    )  # fmt: skip


def socket_target(pg: EmbeddedPostgres, dbname: str) -> PostgresTarget:
    return PostgresTarget(
        host=str(pg.socket_dir), port=pg.port, user=DBT_USER, password=PASSWORD, dbname=dbname, schema="public"
    )


def count_rows(pg: EmbeddedPostgres, dbname: str, table: str) -> int:
    with pg.connect(dbname) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - test constants
    assert row is not None
    return int(row[0])


def relation_exists(pg: EmbeddedPostgres, dbname: str, name: str) -> bool:
    with pg.connect(dbname) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


class ProfileSpy:
    """An ``on_profile`` hook that inspects the rendered profile while it exists."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, profile: RenderedProfile) -> None:
        self.seen.append(
            {
                "dir": profile.profiles_dir,
                "dir_mode": stat.S_IMODE(profile.profiles_dir.stat().st_mode),
                "file_mode": stat.S_IMODE(profile.path.stat().st_mode),
                "text": profile.path.read_text(),
                "files": sorted(p.name for p in profile.profiles_dir.iterdir()),
                "env": dict(profile.env),
            }
        )

    def assert_clean(self) -> None:
        assert self.seen, "on_profile was never called"
        for seen in self.seen:
            assert seen["dir_mode"] == 0o700 and seen["file_mode"] == 0o600
            assert seen["files"] == ["profiles.yml"]
            assert PASSWORD not in seen["text"]
            output = yaml.safe_load(seen["text"])["osds"]["outputs"]["osds"]
            assert output["password"] == f"{{{{ env_var('{PASSWORD_ENV_VAR}') }}}}"
            assert seen["env"] == {PASSWORD_ENV_VAR: PASSWORD}
            assert not seen["dir"].exists(), "profiles dir must be removed after the run"


def assert_no_password(result: DbtRunResult) -> None:
    assert result.log_lines, "no log lines captured"
    assert not any(PASSWORD in line for line in result.log_lines)
    assert PASSWORD not in " ".join(result.args)
    assert PASSWORD not in (result.error or "")


@pytest.fixture(scope="module")
def seeded(pg: EmbeddedPostgres) -> dict[str, Any]:
    """Database ``dbt_main`` after ``dbt seed`` + ``dbt build`` in process over TCP."""
    dbname = "dbt_main"
    pg.create_database(dbname)
    spy = ProfileSpy()
    target = tcp_target(pg, dbname)
    seed = run_dbt("seed", project_dir=PROJECT, target=target, vars=SEED_VARS, on_profile=spy)
    build = run_dbt("build", project_dir=PROJECT, target=target, vars=SEED_VARS, on_profile=spy)
    return {"dbname": dbname, "seed": seed, "build": build, "spy": spy}


def test_seed_and_build_in_process_over_tcp(pg: EmbeddedPostgres, seeded: dict[str, Any]) -> None:
    seed, build = seeded["seed"], seeded["build"]
    seed.raise_for_status()
    build.raise_for_status()
    assert (seed.exit_code, build.exit_code) == (0, 0)

    statuses = build.node_statuses()
    assert statuses["model.web_analytics.high_value_users"] == "success"
    assert statuses[FAILING_TEST] == "pass"
    assert set(statuses.values()) <= {"success", "pass"}
    assert sum(uid.startswith("model.") for uid in statuses) == 5  # the ephemeral model is not "run"
    assert sum(uid.startswith("test.") for uid in statuses) >= 15
    assert build.run_results is not None and build.run_results["args"]["which"] == "build"
    # No target_path given: the temp target dir (and its manifest) is gone; the parsed JSON stays.
    assert build.manifest_path is None and not build.target_path.exists()

    for table, rows in EXPECTED_ROWS.items():
        assert count_rows(pg, seeded["dbname"], table) == rows, table
    assert not relation_exists(pg, seeded["dbname"], "staging.int_page_views_numbered")
    seeded["spy"].assert_clean()
    assert_no_password(build)


def test_unix_socket_host_with_persistent_target(pg: EmbeddedPostgres, seeded: dict[str, Any], tmp_path: Path) -> None:
    target_dir = tmp_path / "target"
    lines: list[str] = []
    result = run_dbt(
        "run",
        project_dir=PROJECT,
        target=socket_target(pg, seeded["dbname"]),
        vars=SEED_VARS,
        select=["tag:web"],
        exclude=["tag:daily"],
        target_path=target_dir,
        log_callback=lines.append,
    ).raise_for_status()
    # tag:web = sessions + daily_page_views; daily_page_views also carries tag:daily.
    assert set(result.node_statuses()) == {"model.web_analytics.sessions"}
    # In process, a run skips manifest.json (most of a small run's time) and writes run_results.json
    # from dbt's in-memory result; write_manifest=True keeps dbt's own writes (a state: run needs them).
    assert result.manifest_path is None and not (target_dir / "manifest.json").exists()
    assert result.run_results_path == target_dir / "run_results.json"
    assert result.run_results is not None and [r["unique_id"] for r in result.run_results["results"]] == [
        "model.web_analytics.sessions"
    ]
    again = run_dbt(
        "run", project_dir=PROJECT, target=socket_target(pg, seeded["dbname"]), vars=SEED_VARS,
        select=["sessions"], target_path=target_dir, write_manifest=True,
    ).raise_for_status()  # fmt: skip
    assert again.manifest_path == target_dir / "manifest.json" and again.manifest_path.is_file()
    assert lines == result.log_lines and any("sessions" in line for line in lines)


def test_failing_test_then_retry(pg: EmbeddedPostgres, seeded: dict[str, Any], tmp_path: Path) -> None:
    dbname = "dbt_retry"
    pg.create_database(dbname)
    target = tcp_target(pg, dbname)
    target_dir = tmp_path / "target"  # kept between the failed build and its retry

    failed = run_dbt(
        "build", project_dir=PROJECT, target=target, vars={**SEED_VARS, "fail_test": True}, target_path=target_dir
    )
    assert not failed.success and failed.exit_code == 1
    assert failed.failed_nodes() == [FAILING_TEST]
    with pytest.raises(DbtRunError, match="assert_no_future_sessions") as info:
        failed.raise_for_status()
    assert info.value.result is failed
    first = failed.node_statuses()
    # A failing test on `sessions` makes dbt build skip everything downstream of sessions.
    skipped = {uid for uid, status in first.items() if status == "skipped"}
    assert "model.web_analytics.high_value_users" in skipped
    assert not relation_exists(pg, dbname, "marts.high_value_users")

    # Same target dir; --vars may be overridden on retry (dbt 1.11 ALLOW_CLI_OVERRIDE_FLAGS).
    retried = run_dbt(
        "retry", project_dir=PROJECT, target=target, vars={**SEED_VARS, "fail_test": False}, target_path=target_dir
    ).raise_for_status()
    second = retried.node_statuses()
    # Retry re-runs exactly the failed node plus the nodes the failure skipped.
    assert set(second) == {FAILING_TEST} | skipped
    assert second[FAILING_TEST] == "pass"
    # run_results.json of a retry records the *combined* args, i.e. those of the original build.
    assert retried.run_results is not None and retried.run_results["args"]["which"] == "build"
    assert retried.run_results["args"]["vars"] == {**SEED_VARS, "fail_test": False}
    assert count_rows(pg, dbname, "marts.high_value_users") == EXPECTED_ROWS["marts.high_value_users"]

    # Nothing left to retry: dbt re-runs nothing and succeeds.
    again = run_dbt("retry", project_dir=PROJECT, target=target, target_path=target_dir).raise_for_status()
    assert again.node_statuses() == {}


def test_read_only_project_builds(pg: EmbeddedPostgres, seeded: dict[str, Any], tmp_path: Path) -> None:
    project = tmp_path / "ro" / "web_analytics"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    for path in [project, *project.rglob("*")]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    try:
        result = run_dbt(
            "build",
            project_dir=project,
            target=tcp_target(pg, seeded["dbname"]),
            vars=SEED_VARS,
            select=["tag:crm"],
        ).raise_for_status()
    finally:
        for path in [project, *project.rglob("*")]:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)
    assert "model.web_analytics.high_value_users" in result.node_statuses()
    # Tests run as root here, which ignores the missing w bits: also prove nothing was written.
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == before


def test_subprocess_from_separate_virtualenv(pg: EmbeddedPostgres, seeded: dict[str, Any], tmp_path: Path) -> None:
    # Must fail, not skip, when the virtualenv cannot be built.
    dbt = ensure_dbt_venv()
    assert dbt.is_file()
    spy = ProfileSpy()
    streamed: list[str] = []
    result = run_dbt(
        "build",
        project_dir=PROJECT,
        target=socket_target(pg, seeded["dbname"]),
        vars=SEED_VARS,
        select=["stg_contacts+"],
        dbt_executable=dbt.parent.parent,  # the venv directory works as well as bin/dbt
        target_path=tmp_path / "target",
        log_callback=streamed.append,
        on_profile=spy,
    ).raise_for_status()
    statuses = result.node_statuses()
    assert statuses["model.web_analytics.stg_contacts"] == "success"
    assert statuses["model.web_analytics.high_value_users"] == "success"
    assert result.manifest_path is not None and result.manifest_path.is_file()
    assert streamed == result.log_lines and any("Completed successfully" in line for line in streamed)
    spy.assert_clean()
    assert_no_password(result)
    # Nothing written into the project: its target/ may hold a manifest from `osds dbt-parse`
    # (other tests parse the repository's projects), never this run's results or logs.
    assert not (PROJECT / "target" / "run_results.json").exists() and not (PROJECT / "logs").exists()


@pytest.mark.parametrize("mode", ["in_process", "subprocess"])
def test_secrets_are_redacted_from_captured_output(pg: EmbeddedPostgres, seeded: dict[str, Any], mode: str) -> None:
    # dbt echoes an unmatched selector ("… does not match any enabled nodes"): make it the secrets.
    # dbt scrubs DBT_ENV_SECRET_* values itself; API_TOKEN is only caught by the runner's redaction.
    token = "tok-" + PASSWORD[::-1]
    result = run_dbt(
        "run",
        project_dir=PROJECT,
        target=tcp_target(pg, seeded["dbname"]),
        vars=SEED_VARS,
        select=[PASSWORD, token],
        env={"API_TOKEN": token},
        dbt_executable=ensure_dbt_venv() if mode == "subprocess" else None,
    )
    assert result.success and result.ran_nothing  # raise_for_status would say the selection matched nothing
    assert PASSWORD not in result.selection and token not in result.selection
    echoed = [line for line in result.log_lines if "does not match any enabled nodes" in line]
    assert len(echoed) == 2 and all("***" in line for line in echoed), result.log_lines
    assert not any(PASSWORD in line or token in line for line in result.log_lines)


def test_parse_writes_no_run_results_and_no_leftovers(seeded: dict[str, Any], tmp_path: Path) -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    result = run_dbt(
        "parse",
        project_dir=PROJECT,
        target=PostgresTarget(host="127.0.0.1", port=1, user="nobody", dbname="none", schema="public"),
        target_path=tmp_path / "target",
    ).raise_for_status()
    assert result.manifest_path is not None and result.manifest_path.is_file()
    assert result.run_results is None and result.run_results_path is None  # parse writes none
    leftovers = {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("osds-dbt-")}
    assert not leftovers


def test_source_freshness_and_the_snowplow_source(pg: EmbeddedPostgres, seeded: dict[str, Any], tmp_path: Path) -> None:
    # The demo's enriched sample, loaded as its snowplow step does: atomic.events and the web_page table.
    from airflow_osds.snowplow.iglu import Resolver
    from airflow_osds.snowplow.loader import LoadOptions, load
    from airflow_osds.snowplow.sources import local_files

    dbname = seeded["dbname"]
    include = PROJECT.parents[1]
    with pg.connect(dbname, autocommit=True) as conn:
        load(conn, local_files(include / "data" / "enriched"), Resolver.from_sources([include / "iglu"]),
             LoadOptions(max_bad_ratio=None))
        page_views = conn.execute("SELECT count(*) FROM atomic.events WHERE event_name = 'page_view'").fetchone()[0]
    target = tcp_target(pg, dbname)

    fresh = run_dbt("source freshness", project_dir=PROJECT, target=target, target_path=tmp_path / "target")
    # The demo events are from 24 November 2026: older than warn_after (24 h) -> warn, not error.
    assert fresh.success and fresh.exit_code == 0
    assert fresh.sources is not None
    assert [(r["unique_id"], r["status"]) for r in fresh.sources["results"]] == [
        ("source.web_analytics.snowplow.events", "warn")
    ]

    # Default vars: the staging model reads the source, not the seed.
    run = run_dbt("run", project_dir=PROJECT, target=target, select=["stg_page_views"]).raise_for_status()
    assert set(run.node_statuses()) == {"model.web_analytics.stg_page_views"}
    assert count_rows(pg, dbname, "staging.stg_page_views") == page_views > 0
    with pg.connect(dbname) as conn:
        row = conn.execute(
            "SELECT definition LIKE '%atomic.events%' FROM pg_views WHERE schemaname = 'staging' AND viewname = 'stg_page_views'"
        ).fetchone()
    assert row == (True,)


def test_dbt_trusts_the_recorded_file_list_only_when_the_files_are_proven_unchanged(
    pg: EmbeddedPostgres, seeded: dict[str, Any], tmp_path: Path
) -> None:
    from airflow_osds.dbt.manifest_build import parse_project

    project = tmp_path / "web_analytics"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    target = tcp_target(pg, seeded["dbname"])
    parse_project(project, connection=target, vars=SEED_VARS)

    def run() -> Any:
        return run_dbt("run", project_dir=project, target=target, select=["stg_contacts"], vars=SEED_VARS,
                       parse_state=project / "target").raise_for_status()

    same = run()
    assert "--no-partial-parse-file-diff" in same.args and same.partial_parse is True
    model = project / "models" / "staging" / "stg_contacts.sql"
    model.write_text(model.read_text().rstrip().rstrip(";") + "\n-- edited after the parse\n")
    changed = run()  # the fingerprint differs: dbt reads and hashes the files, and re-parses the edit
    assert "--no-partial-parse-file-diff" not in changed.args and changed.partial_parse is True
    (result,) = changed.run_results["results"]
    assert "edited after the parse" in result["compiled_code"], "the edited model ran, not the parse's copy"


def test_a_dbt_killed_before_it_could_cancel_leaves_no_query_running(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    # No grace period: SIGTERM follows SIGINT at once, dbt dies before its Ctrl-C path terminates its
    # query, and PostgreSQL would run the gone client's pg_sleep(60) on. The handle terminates it.
    import threading
    import time

    from airflow_osds.dbt.invocation import DbtRunHandle

    project = tmp_path / "sleepy"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        'name: sleepy\nversion: "1.0.0"\nconfig-version: 2\nprofile: osds\nmodels:\n  sleepy:\n    +materialized: table\n'
    )
    (project / "models" / "slow.sql").write_text("select pg_sleep(60)::text as slept\n")
    handle = DbtRunHandle(grace_period=0)
    outcome: dict[str, DbtRunResult] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", run_dbt(
        "run", project_dir=project, target=tcp_target(pg, "postgres"), dbt_executable=ensure_dbt_venv(), handle=handle,
    )))  # fmt: skip
    runner.start()
    sleeping = (
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
        "AND position('pg_sleep(60)' in query) > 0"
    )

    def backends() -> list[tuple[Any, ...]]:
        if handle.application_name is None:
            return []
        with pg.connect("postgres") as conn:
            return conn.execute(sleeping, (handle.application_name,)).fetchall()

    deadline = time.monotonic() + 60
    while not backends() and time.monotonic() < deadline:
        time.sleep(0.2)
    before = backends()
    assert before, "dbt's pg_sleep query never started under the invocation's application_name"
    started = time.monotonic()
    handle.stop()
    stop_s = time.monotonic() - started
    runner.join(timeout=30)
    result = outcome["result"]
    assert result.stopped and not result.success
    assert result.error == "dbt was stopped on request"
    assert backends() == [], "the query dbt left running was terminated"
    pid = before[0][0]
    assert any(
        f"osds: terminated 1 query(ies) the stopped dbt left running in the warehouse (application_name "
        f"{handle.application_name}, backend pid {pid})" in line for line in result.log_lines
    ), result.log_lines[-5:]
    assert stop_s < 10, stop_s
