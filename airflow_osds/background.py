"""One background writer: database writes overlapped with the parsing that feeds them (no Airflow imports).

The Snowplow loader and ``osds-target-postgres`` parse in the calling thread, where Python is
busy, while the previous batch travels to PostgreSQL and is written on its own core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["OneWriter"]


class OneWriter:
    """Runs one write at a time in a thread, so the caller prepares the next one meanwhile.

    :meth:`submit` first waits for the write before it, so writes commit in order and a
    failed write stops the caller at once (its exception is raised by the next ``submit`` or
    :meth:`wait`). Leaving the block waits for the write in flight, whatever happens.
    """

    def __init__(self, name: str = "osds-writer") -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._future: Any = None

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self.wait()
        self._future = self._pool.submit(fn, *args)

    def wait(self) -> None:
        future, self._future = self._future, None
        if future is not None:
            future.result()

    def __enter__(self) -> OneWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        future, self._future = self._future, None
        try:
            if future is not None and exc_info[0] is not None:
                future.exception()  # wait for it, but the exception in flight is the one to raise
            elif future is not None:
                future.result()
        finally:
            self._pool.shutdown(wait=True)
