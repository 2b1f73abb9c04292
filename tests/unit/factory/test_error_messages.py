"""Each validation rule of the language, with the exact message and position a user sees."""

from __future__ import annotations

import pytest

from airflow_osds.factory.blocks import BLOCKS

from .conftest import errors_of

BASE = "pipeline: p\nsteps:\n  a:\n    sql: SELECT 1\n"

# The block list comes from the registry: a new block changes the message, not this test.
BLOCK_LIST = ", ".join(f"`{name}`" for name in BLOCKS)

CASES = [
    # (file text, expected error, rendered as <file>:<line>:<col>: <message> (<location>))
    ("pipeline: p\nsteps:\n  a: {retries: 1}\n",
     f"p.yml:3:6: a step needs exactly one block among {BLOCK_LIST} (found none) (steps.a)"),
    ("pipeline: p\nsteps:\n  a: {sql: SELECT 1, python: {callable: json.dumps}}\n",
     f"p.yml:3:6: a step needs exactly one block among {BLOCK_LIST} (found {', '.join(n for n in BLOCKS if n in ('sql', 'python'))}) (steps.a)"),
    ("pipeline: p\nsteps:\n  a: {sql: {file: q.txt}}\n",
     "p.yml:3:12: `file` must name a .sql file, got 'q.txt' (steps.a.sql)"),
    ("pipeline: p\nsteps:\n  a: {sql: {}}\n",
     "p.yml:3:12: give exactly one of `query` or `file` (steps.a.sql)"),
    ("pipeline: p\nsteps:\n  a: {sensor: {sql: SELECT 1, path: x}}\n",
     "p.yml:3:15: give exactly one of `sql`, `path` or `pipeline` (got sql, path) (steps.a.sensor)"),
    ("pipeline: p\nsteps:\n  a: {sensor: {path: x, step: y}}\n",
     "p.yml:3:15: `step` needs `pipeline` (steps.a.sensor)"),
    ("pipeline: p\nsteps:\n  a: {sensor: {path: x, timeout: soon}}\n",
     "p.yml:3:34: 'soon' is not a duration: write e.g. 30s, 15m, 1h30m, 2d or seconds as a number (steps.a.sensor.timeout)"),
    ("pipeline: p\nsteps:\n  a: {python: {callable: json.dumps, expand: {x: {from: b}, y: [1]}}}\n  b: {sql: SELECT 1}\n",
     "p.yml:3:15: `expand` over another step's output (`from:`) takes exactly one argument (steps.a.python)"),
    ("pipeline: p\nsteps:\n  a: {python: {callable: dumps}}\n",
     "p.yml:3:26: String should match pattern '^[A-Za-z_][\\w]*(\\.[A-Za-z_][\\w]*)+$' (steps.a.python.callable)"),
    ("pipeline: p\nschedule: {cron: '@daily', every: 1h}\n" + BASE.split("\n", 1)[1],
     "p.yml:2:11: give `cron` or `every`, not both (schedule)"),
    ("pipeline: p\nschedule: {}\n" + BASE.split("\n", 1)[1],
     "p.yml:2:11: give at least one of `cron`, `every` or `data` (schedule)"),
    ("pipeline: p\nschedule: {data: {all_of: [a], any_of: [b]}}\n" + BASE.split("\n", 1)[1],
     "p.yml:2:18: give exactly one of `all_of` or `any_of` (schedule.data)"),
    ("pipeline: p\nschedule: {data: sometimes}\n" + BASE.split("\n", 1)[1],
     "p.yml:2:18: Input should be 'all' or 'any' (schedule.data)"),
    ("pipeline: p\ntimezone: Mars/Olympus\n" + BASE.split("\n", 1)[1],
     "p.yml:2:11: unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Paris' or 'UTC' (timezone)"),
    ("pipeline: p\nsteps:\n  a: {sql: SELECT 1, reads: [a.b.c]}\n",
     "p.yml:3:30: 'a.b.c' is not a table name: write 'schema.table', 'table' or 'connection:schema.table'. (steps.a.reads.0)"),
    ("pipeline: p\nsteps:\n  g:\n    group:\n      steps:\n        a: {sql: SELECT 1, after: [g]}\n",
     "p.yml:6:36: `g` cannot run after itself or its own group (steps.g.group.steps.a.after.0)"),
    ("pipeline: p\nsteps:\n  g:\n    group: {steps: {}}\n",
     "p.yml:4:20: Dictionary should have at least 1 item after validation, not 0 (steps.g.group.steps)"),
    ("pipeline: p\ndescription: ${BAD-NAME}\n" + BASE.split("\n", 1)[1],
     "p.yml:2:14: `${BAD-NAME}` is not a valid reference: write ${NAME} or ${NAME:-default} (description)"),
    ("pipeline: p\ncallbacks: {on_failure: [{notifier: x.Y, arg: {}}]}\n" + BASE.split("\n", 1)[1],
     "p.yml:2:42: unknown key `arg`: did you mean `args`? (callbacks.on_failure.0.arg)"),
    ("pipeline: p\nparams: {n: {default: 1, typ: integer}}\n" + BASE.split("\n", 1)[1],
     None),  # a mapping with `default` is a Param; unknown keys in it are reported below
]


@pytest.mark.parametrize(("text", "expected"), [c for c in CASES if c[1]], ids=[c[1][:60] for c in CASES if c[1]])
def test_error_message(write, project, text: str, expected: str) -> None:
    write("p.yml", text)
    assert errors_of(project()) == [expected]


def test_param_spec_rejects_unknown_keys(write, project) -> None:
    write("p.yml", "pipeline: p\nparams: {n: {default: 1, typ: integer}}\n" + BASE.split("\n", 1)[1])
    (error,) = errors_of(project())
    assert "typ" in error and error.startswith("p.yml:2:")


def test_defaults_file_must_be_a_mapping(write, project) -> None:
    write("defaults.yml", "- a\n")
    write("p.yml", BASE)
    assert errors_of(project()) == ["defaults.yml:1:1: a defaults file must be a mapping, e.g. `defaults: {retries: 2}`"]


def test_defaults_file_cannot_set_pipeline_only_keys(write, project) -> None:
    write("defaults.yml", "schedule: '@daily'\n")
    write("p.yml", BASE)
    (error,) = errors_of(project())
    assert error.startswith("defaults.yml:1:1: unknown key `schedule`: allowed keys: callbacks, catchup, defaults,")
