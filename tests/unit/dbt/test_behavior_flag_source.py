"""The in-process dbt invocation replaces dbt-common's ``inspect.stack()`` lookup of a behaviour flag's
source module with a walk over the same frames: the same answer, without reading every frame's source."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from dbt_common import behavior_flags

from airflow_osds.dbt import invocation

FLAG: Any = {"name": "osds_probe_flag", "default": True, "description": "a flag built only by this test"}


def _render_here() -> str:
    return str(behavior_flags.BehaviorFlagRendered(FLAG, {})._behavior_change_event.flag_source)


def test_the_flag_source_is_dbts_answer_without_inspect_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = behavior_flags.BehaviorFlagRendered
    invocation._walk_frames_for_behavior_flag_source()
    ours = cls._default_source
    invocation._walk_frames_for_behavior_flag_source()  # once is enough: a second call changes nothing
    assert cls._default_source is ours and ours._osds

    stacks: list[int] = []
    real_stack = inspect.stack
    monkeypatch.setattr(inspect, "stack", lambda *a, **k: stacks.append(1) or real_stack(*a, **k))
    with_ours = _render_here()
    assert stacks == []
    monkeypatch.setattr(cls, "_default_source", staticmethod(ours.__wrapped__))  # dbt-common's own, for this test
    with_dbts = _render_here()
    assert stacks  # dbt-common's reads the stack
    assert with_ours == with_dbts == __name__
