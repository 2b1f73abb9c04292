from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_osds.factory.project import Project, load_project


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a (dedented) file under a temporary pipelines folder."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / "pipelines" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Project]:
    def _load(**kwargs: object) -> Project:
        return load_project(tmp_path / "pipelines", **kwargs)  # type: ignore[arg-type]

    return _load


def errors_of(project: Project) -> list[str]:
    """Every error rendered as `<file name>:<line>:<col>: <message>`."""
    return [p.render(Path(e.path).name) for e in project.errors for p in e.problems]
