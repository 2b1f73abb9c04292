"""Rules across the files of a folder: ids, data schedules, cycles, unproduced reads, defaults, env vars."""

from __future__ import annotations

from pathlib import Path

from airflow_osds.assets import TableRef
from airflow_osds.factory.project import load_project

from .conftest import errors_of

PRODUCER = """\
    pipeline: producer
    steps:
      load: {sql: "INSERT INTO shop.orders SELECT * FROM landing.orders"}
"""
CONSUMER = """\
    pipeline: consumer
    schedule: data
    steps:
      count: {sql: "INSERT INTO shop.counts SELECT count(*) FROM shop.orders"}
"""


def test_data_schedule_reads_what_other_pipelines_write(write, project) -> None:
    write("producer.yml", PRODUCER)
    write("consumer.yml", CONSUMER)
    proj = project()
    assert not proj.errors
    assert proj.upstream_data(proj.plans["consumer"]) == [TableRef("warehouse", "shop", "orders")]
    assert proj.upstream_pipelines(proj.plans["consumer"]) == {"producer"}
    assert proj.writers[TableRef("warehouse", "shop", "counts")] == ["consumer"]


def test_unproduced_read_is_a_warning(write, project) -> None:
    write("producer.yml", PRODUCER)
    proj = project()
    assert not proj.errors
    ((path, warning),) = proj.warnings
    assert Path(path).name == "producer.yml"
    assert warning.render("producer.yml").startswith(
        "producer.yml:3:3: step `load` reads warehouse:landing.orders, which no pipeline writes"
    )


def test_data_schedule_without_producer_is_an_error(write, project) -> None:
    write("consumer.yml", CONSUMER)
    proj = project()
    assert "consumer" not in proj.plans
    (error,) = errors_of(proj)
    assert error.startswith("consumer.yml:2:11: `schedule: data` but no other pipeline writes what this one reads (warehouse:shop.orders)")


def test_duplicate_pipeline_id(write, project) -> None:
    write("a.yml", PRODUCER)
    write("b.yml", PRODUCER)
    proj = project()
    assert list(proj.plans) == ["producer"]
    (error,) = errors_of(proj)
    assert error.startswith("b.yml:1:11: pipeline id `producer` is already used by ")
    assert error.endswith("a.yml (pipeline)")


def test_cycle_between_data_scheduled_pipelines(write, project) -> None:
    write("a.yml", "pipeline: a\nschedule: data\nsteps:\n  s: {sql: 'INSERT INTO x.a SELECT * FROM x.b'}\n")
    write("b.yml", "pipeline: b\nschedule: data\nsteps:\n  s: {sql: 'INSERT INTO x.b SELECT * FROM x.a'}\n")
    proj = project()
    assert proj.plans == {}
    errors = errors_of(proj)
    assert len(errors) == 2 and all("data-scheduled pipelines form a cycle" in e for e in errors)


def test_folder_defaults_merge_nearest_last(write, project) -> None:
    write("defaults.yml", "tags: [team-a]\nowners: [alice]\ndefaults: {retries: 2, warehouse: dwh}\ncatchup: true\n")
    write("sub/defaults.yml", "tags: [sub]\ndefaults: {retries: 5}\n")
    write("sub/p.yml", "pipeline: p\ntags: [mine]\ndefaults: {pool: etl}\ncatchup: false\nsteps:\n  a: {sql: SELECT 1}\n")
    write("q.yml", "pipeline: q\nsteps:\n  a: {sql: SELECT 1}\n")
    proj = project()
    assert not proj.errors, errors_of(proj)
    p = proj.plans["p"].parsed.spec
    assert p.tags == ["team-a", "sub", "mine"]
    assert p.owners == ["alice"]
    assert (p.defaults.retries, p.defaults.warehouse, p.defaults.pool) == (5, "dwh", "etl")
    assert p.catchup is False
    q = proj.plans["q"].parsed.spec
    assert (q.tags, q.defaults.retries, q.catchup) == (["team-a"], 2, True)


def test_broken_defaults_file_is_reported_once_with_its_own_position(write, project) -> None:
    write("defaults.yml", "defaults:\n  retris: 2\n")
    write("a.yml", PRODUCER)
    write("b.yml", PRODUCER.replace("producer", "other"))
    proj = project()
    assert errors_of(proj) == ["defaults.yml:2:3: unknown key `retris`: did you mean `retries`? (defaults.retris)"]


def test_env_vars_are_strict(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        defaults: {warehouse: "${WH}", pool: "${POOL:-default_pool}"}
        steps:
          a: {sql: "SELECT '$${literal}', '${MISSING}'"}
    """)
    proj = project(environ={"WH": "dwh"})
    assert errors_of(proj) == [
        "p.yml:4:12: environment variable `MISSING` is not set: set it or write ${MISSING:-default} (steps.a.sql)"
    ]
    write("p.yml", """\
        pipeline: p
        defaults: {warehouse: "${WH}", pool: "${POOL:-default_pool}"}
        steps:
          a: {sql: "SELECT '$${literal}'"}
    """)
    spec = project(environ={"WH": "dwh"}).plans["p"].parsed.spec
    assert (spec.defaults.warehouse, spec.defaults.pool) == ("dwh", "default_pool")
    assert spec.steps["a"].sql.query == "SELECT '${literal}'"


def test_a_reference_written_with_yaml_escapes_is_substituted(write, project) -> None:
    # `${` is nowhere in the text: the escapes make it, so the reader must not skip the substitution.
    write("p.yml", 'pipeline: p\ndescription: "\\x24{DESC} and \\u0024{MORE:-more}"\nsteps:\n  a: {sql: SELECT 1}\n')
    proj = project(environ={"DESC": "described"})
    assert "${" not in (proj.folder / "p.yml").read_text()
    assert proj.plans["p"].parsed.spec.description == "described and more"
    assert {"DESC", "MORE"} <= proj.env_names  # the compiled cache is keyed on them too


def test_env_var_cannot_change_structure(write, project) -> None:
    write("p.yml", "pipeline: p\ndescription: ${DESC}\nsteps:\n  a: {sql: SELECT 1}\n")
    spec = project(environ={"DESC": "x\nsteps: {}"}).plans["p"].parsed.spec
    assert spec.description == "x\nsteps: {}" and list(spec.steps) == ["a"]


def test_a_single_file_can_be_loaded(write) -> None:
    path = write("producer.yml", PRODUCER)
    proj = load_project(path)
    assert list(proj.plans) == ["producer"]
