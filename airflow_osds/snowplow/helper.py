"""The loader's parsing helper: a second process that parses chunks while the loader's process writes them.

One Python process runs one thread at a time: with the parse and the writer in one process,
the writer's turns (sending COPY data, reading PostgreSQL's answers) and the parse share one
core while PostgreSQL works on the other, and each waits for the other. In a helper process
the parse has a core of its own; the loader's process is left with reading the file and
sending what the helper made, and parses a chunk itself only when the writer is found waiting
for the parse while the helper is busy (then both cores parse).

The helper is ``python -m airflow_osds.snowplow.helper``, fed pickled chunks on its stdin and
answering with pickled :class:`~airflow_osds.snowplow.chunks.Chunk` objects on its stdout, in
order. It is not a :mod:`multiprocessing` child: those re-run the parent's ``__main__`` script
when it has no ``if __name__ == "__main__"`` guard, and a loader may be called from any
script. It exits when its stdin closes, which happens too when the loader's process dies.

A helper costs a process start (an interpreter importing the parse modules and compiling each
schema's validator again), so a load starts one only after it has parsed ``start_after`` lines
itself: a small file never pays for it. Whatever keeps a helper from working (it cannot start,
the resolver does not pickle, it is killed) moves the parse back into the loader's process with
a warning: the load goes on, slower, with the same results, since both run
:class:`~airflow_osds.snowplow.chunks.ChunkParser`.
"""

from __future__ import annotations

import collections
import gc
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, BinaryIO

from airflow_osds.snowplow.chunks import Chunk, ChunkParser

__all__ = ["ParseHelper", "Parsed"]

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 10.0


class HelperStopped(Exception):
    """The helper process ended before it answered (killed, out of memory, or stopped by the loader)."""


class Parsed:
    """A chunk being parsed; :meth:`result` waits for it, and parses it here should the helper have stopped."""

    def __init__(self, helper: ParseHelper, lines: Sequence[tuple[int, bytes]], batch: bool,
                 future: Future[Chunk]) -> None:
        self._helper, self._lines, self._batch, self._future = helper, lines, batch, future

    def result(self) -> Chunk:
        started = time.perf_counter()
        try:
            chunk = self._future.result()
        except HelperStopped as exc:
            self._helper.stop_using(str(exc))
            return self._helper.parser.parse(self._lines, batch=self._batch)
        self._helper.note_wait(started, time.perf_counter())
        if chunk.events is None:
            chunk.lines = self._lines
        return chunk


class ParseHelper:
    """Parses a load's chunks: here for its first ``start_after`` lines, in a helper process after that.

    :param start_after: lines parsed in this process before the helper starts; ``None`` never
        starts it, ``0`` starts it with the first chunk.
    """

    def __init__(self, parser: ChunkParser, *, start_after: int | None) -> None:
        self.parser = parser
        self.start_after = start_after
        self.chunks_in_helper = 0
        self.chunks_here = 0
        self._writer_waited = False  # whether the writer waited long for the last chunk it took
        self._last_taken: float | None = None
        self.stopped: str | None = None  # why the parse came back here, once it did
        self._process: _Process | None = None
        self._parsed_here = 0

    def submit(self, lines: Sequence[tuple[int, bytes]], *, batch: bool) -> Parsed:
        """Start parsing ``lines`` (with ``batch``, the chunk's COPY texts are made too).

        When the writer spent over a third of its last turn waiting for the chunk it took (the
        parse is what the load waits for) and the helper is still on an earlier one, this one
        is parsed here: both processes parse, each on a core. When PostgreSQL is the bound, the
        helper keeps up alone and the loader's process only writes.
        """
        process = self._process_for_next()
        if process is not None and not (self._writer_waited and process.busy()):
            self.chunks_in_helper += 1
            return Parsed(self, lines, batch, process.submit(lines, batch))
        done: Future[Chunk] = Future()
        done.set_result(self.parser.parse(lines, batch=batch))
        self._parsed_here += len(lines)
        self.chunks_here += 1
        return Parsed(self, lines, batch, done)

    def note_wait(self, started: float, ended: float) -> None:
        """Called as the writer takes a chunk: it waited from ``started`` to ``ended`` for its parse.

        The parse is the bound when that wait is over a third of the writer's time since it
        took the chunk before (the rest is writing).
        """
        if self._last_taken is not None:
            self._writer_waited = (ended - started) * 3 > ended - self._last_taken
        self._last_taken = ended

    def stop_using(self, why: str) -> None:
        """Parse the rest here (the load goes on, slower); says so once."""
        if self.stopped is None:
            self.stopped = why
            log.warning("Snowplow load: the parsing helper %s; parsing in the loader's process from now on", why)
        process, self._process = self._process, None
        if process is not None:
            process.kill()

    def close(self) -> None:
        """Stop the helper: it finishes the chunk it is on and exits."""
        process, self._process = self._process, None
        if process is not None:
            process.close()

    def __enter__(self) -> ParseHelper:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
            return
        process, self._process = self._process, None
        if process is not None:
            process.kill()  # nothing it makes will be used

    def _process_for_next(self) -> _Process | None:
        if self._process is not None or self.stopped is not None or self.start_after is None:
            return self._process
        if self._parsed_here < self.start_after:
            return None
        try:
            self._process = _Process(pickle.dumps(self.parser.resolver, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:  # noqa: BLE001 - a resolver that does not pickle, no interpreter to run …
            self.stop_using(f"could not be started ({type(exc).__name__}: {exc})")
            return None
        log.info("Snowplow load: a helper process (pid %d) parses the chunks from now on, after %d lines here",
                 self._process.pid, self._parsed_here)
        return self._process


class _Process:
    """The helper process, a thread that feeds it and a thread that reads its answers."""

    def __init__(self, resolver: bytes) -> None:
        # The parent's import path, so the helper finds what the resolver's classes need.
        path = os.pathsep.join(entry for entry in sys.path if entry)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_osds.snowplow.helper"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path},
        )
        self.pid = self._proc.pid
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()  # the resolver's bytes, then (lines, batch)
        self._pending: collections.deque[Future[Chunk]] = collections.deque()
        self._lock = threading.Lock()
        self._ended: str | None = None
        self._outbox.put(resolver)
        self._threads = [threading.Thread(target=self._feed, name="osds-parse-feed", daemon=True),
                         threading.Thread(target=self._read, name="osds-parse-read", daemon=True)]
        for thread in self._threads:
            thread.start()

    def submit(self, lines: Sequence[tuple[int, bytes]], batch: bool) -> Future[Chunk]:
        future: Future[Chunk] = Future()
        with self._lock:
            if self._ended is not None:
                future.set_exception(HelperStopped(self._ended))
                return future
            self._pending.append(future)
        # Pickled by the feeding thread: the caller goes back to reading the file.
        self._outbox.put((lines, batch))
        return future

    def busy(self) -> bool:
        """Whether a chunk sent is still unanswered."""
        with self._lock:
            return bool(self._pending)

    def close(self) -> None:
        self._outbox.put(None)  # the feeder closes the helper's stdin: it exits after its chunk
        try:
            self._proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for thread in self._threads:
            thread.join(timeout=_STOP_TIMEOUT_S)

    def kill(self) -> None:
        self._proc.kill()
        self.close()

    def _feed(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while (item := self._outbox.get()) is not None:
                stdin.write(item if isinstance(item, bytes) else pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
                stdin.flush()
        except OSError:  # the helper is gone; the reading thread says why
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass  # a broken pipe on the final flush: the helper is gone already

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        why = "stopped"
        try:
            while True:
                try:
                    ok, value = pickle.load(stdout)
                except EOFError:
                    break
                with self._lock:
                    future = self._pending.popleft()
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except Exception as exc:  # noqa: BLE001 - an answer that does not unpickle is the helper's end too
            why = f"sent what cannot be read ({type(exc).__name__}: {exc})"
            self._proc.kill()  # it may still be running: nothing it sends from here on can be trusted
        code = self._proc.wait()
        if why == "stopped" and code:
            why = f"stopped with exit status {code}"
        with self._lock:
            self._ended = why
            pending, self._pending = list(self._pending), collections.deque()
        for future in pending:
            future.set_exception(HelperStopped(why))


# -- the helper process ------------------------------------------------------------------------
def _answer(out: BinaryIO, ok: bool, value: Any) -> None:
    try:
        data = pickle.dumps((ok, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - an exception that does not pickle still has to be told
        data = pickle.dumps((False, RuntimeError(f"{type(value).__name__}: {value} (and it cannot be pickled: {exc})")))
    out.write(data)
    out.flush()


def main() -> None:
    source, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout carries the answers: a stray print must not corrupt them
    # As in the loader's process (loader._throughput_mode): a chunk makes millions of acyclic
    # objects that reference counting frees; the cyclic collector's passes only cost time.
    gc.disable()
    parser = ChunkParser(pickle.load(source))
    while True:
        try:
            lines, batch = pickle.load(source)
        except EOFError:
            return
        try:
            chunk = parser.parse(lines, batch=batch)
            chunk.leave_out_events()
        except Exception as exc:  # noqa: BLE001 - the loader raises it, as if it had parsed the chunk itself
            _answer(out, False, exc)
        else:
            _answer(out, True, chunk)


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):  # the loader is gone or stopping: nothing to answer to
        sys.exit(1)
