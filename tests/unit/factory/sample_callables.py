"""Importable callables and a notifier used by the factory tests' pipeline files."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseNotifier

CALLS: list[Any] = []


def on_failure(context: Any) -> None:
    CALLS.append(("on_failure", context["ti"].task_id))


def double(x: int) -> int:
    return 2 * x


def numbers() -> list[int]:
    return [1, 2, 3]


class RecordingNotifier(BaseNotifier):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def notify(self, context: Any) -> None:
        CALLS.append((self.label, context["dag"].dag_id))
