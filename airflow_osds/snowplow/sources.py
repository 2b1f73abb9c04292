"""Where enriched files come from: a local file or folder here; object storage through any opener.

The loader only needs, per file, a stable name for the ledger, its size, and a way to open its
bytes: :class:`SourceFile`. Local paths are listed here; ``ObjectStoragePath`` URLs (``s3://…``)
are listed by :mod:`airflow_osds.hooks.snowplow`, which wraps them the same way, so this module
never imports Airflow. Reading is streamed, gzip is recognised by its magic bytes (whatever the
file is called), and the raw bytes are hashed on the way through for the ledger's checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = ["SourceFile", "local_files", "read_lines"]

_GZIP_MAGIC = b"\x1f\x8b"
# Files a folder of enriched output holds that are not events.
_IGNORED_PREFIXES = (".", "_")


@dataclass(frozen=True)
class SourceFile:
    """One enriched file: ``uri`` names it in the ledger (an absolute path or a URL)."""

    uri: str
    size: int
    opener: Callable[[], BinaryIO] = field(repr=False, compare=False)

    def open(self) -> BinaryIO:
        return self.opener()


def local_files(path: str | os.PathLike[str], *, pattern: str = "*") -> list[SourceFile]:
    """The files at ``path`` (a file, or every file under a folder matching ``pattern``), sorted by name.

    Hidden files and ``_``-prefixed markers (``_SUCCESS``) are skipped.

    :raises FileNotFoundError: ``path`` does not exist.
    """
    root = Path(path).expanduser().resolve()
    if root.is_file():
        return [_local(root)]
    if not root.is_dir():
        raise FileNotFoundError(f"no enriched events at {root}: the path does not exist")
    found = [
        p for p in root.rglob(pattern)
        if p.is_file() and not any(part.startswith(_IGNORED_PREFIXES) for part in p.relative_to(root).parts)
    ]  # fmt: skip
    return [_local(p) for p in sorted(found)]


def _local(path: Path) -> SourceFile:
    return SourceFile(uri=str(path), size=path.stat().st_size, opener=lambda: path.open("rb"))


class _HashingReader(io.RawIOBase):
    """Passes a binary stream through, hashing every byte read (the ledger's checksum)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.digest.update(data)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class LineReader:
    """The lines (bytes, without the line end) of one file, numbered from 1; ``checksum`` once read to the end."""

    def __init__(self, source: SourceFile, *, buffer_size: int = 1 << 20) -> None:
        self._hashing = _HashingReader(source.open())
        buffered = io.BufferedReader(self._hashing, buffer_size=buffer_size)
        stream: BinaryIO = buffered
        if buffered.peek(2)[:2] == _GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        self._stream = stream
        self.finished = False

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        number = 0
        for number, raw in enumerate(self._stream, start=1):  # noqa: B007
            yield number, raw.rstrip(b"\r\n")
        self.finished = True

    @property
    def checksum(self) -> str:
        """``sha256:<hex>`` of the file's bytes as stored (compressed if it is gzip)."""
        return "sha256:" + self._hashing.digest.hexdigest()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> LineReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_lines(source: SourceFile) -> LineReader:
    """Open ``source`` for streaming line by line (see :class:`LineReader`)."""
    return LineReader(source)
