"""The compiled cache: a folder's validated, planned and compiled pipelines, shared by every process.

Airflow's DAG processor parses each DAG file in a fresh process and a worker parses it
again at every task start, so an in-process cache never hits in production. Like
``__pycache__``, this cache lives on disk: the first process that needs a folder compiles it
and writes one file; every later process checks the key and reads.

**Key** — cheap to compute, no file is read: the (path, mtime, size) of every file under
the pipelines folder (pipeline files, ``defaults.yml``, SQL) and of every other file
compiling read (SQL files elsewhere, dbt manifests and project files), the values of the
environment variables the files reference (hashed: the cache never holds a variable's
value), the default warehouse, and the versions of airflow-osds (with the stamp of its
source files, so an edited checkout recompiles), Python and Airflow.

**File** — ``<key of folder>.osdsc``: a header (the key, the folder's errors and warnings,
where each pipeline's blob starts) followed by one pickled blob per pipeline, so a task
start unpickles only its own pipeline. Written to a temporary file and renamed, so
concurrent writers never expose a partial file (the last rename wins; both are valid).
Build failures seen by the processes that build DAGs go to a sidecar ``.built`` file, so the
error-reporting DAG file learns them without building anything.

**Location** — ``OSDS_CACHE_DIR`` or ``[osds] cache_dir`` if set; otherwise
``<pipelines folder>/.osds_cache/``, falling back to ``$AIRFLOW_HOME/osds_cache/`` when the
folder is read-only (a DAG bundle). ``osds compile`` pre-warms it for Docker images.
Cache files are created 0600 in 0700 folders: they are loaded with ``pickle``, so only the
user running Airflow may write them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import struct
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow_osds.exceptions import PipelineSpecError
from airflow_osds.factory.compiled import CompiledPipeline, CompiledProject, Record

__all__ = ["CACHE_DIR_ENV", "CacheKey", "CompiledCache", "cache_dirs", "folder_files"]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "OSDS_CACHE_DIR"
_MAGIC = b"OSDSC\x00\x01\n"  # bump the last byte when the file layout changes
_HEADER = struct.Struct("<8sQ")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]

Stat = tuple[str, int, int]


class CacheKey(Record):
    """What a compiled folder depends on. Equal keys ⇒ the compiled result is still right."""

    __slots__ = ("folder_files", "dependencies", "env", "default_warehouse", "versions")
    folder_files: tuple[Stat, ...]
    dependencies: tuple[Stat, ...]
    env: tuple[tuple[str, str | None], ...]
    default_warehouse: str
    versions: tuple[str, ...]

    def is_current(self, folder: Path, environ: Mapping[str, str] | None = None) -> bool:
        return (
            self.versions == _versions()
            and self.env == _env_digest((name for name, _ in self.env), environ)
            and self.folder_files == folder_files(folder)
            and all(stat(entry[0]) == entry for entry in self.dependencies)
        )


def make_key(
    folder: Path, *, default_warehouse: str, dependencies: Iterable[Path], env_names: Iterable[str],
    environ: Mapping[str, str] | None = None,
) -> CacheKey:
    files = folder_files(folder)
    inside = {path for path, _, _ in files}
    return CacheKey(
        folder_files=files,
        dependencies=tuple(sorted(stat(str(p)) for p in set(dependencies) if str(p) not in inside)),
        env=_env_digest(env_names, environ),
        default_warehouse=default_warehouse,
        versions=_versions(),
    )


def stat(path: str) -> Stat:
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, st.st_mtime_ns, st.st_size)


def folder_files(folder: Path) -> tuple[Stat, ...]:
    """Every file under ``folder`` (hidden entries and ``__pycache__`` skipped), with its stat."""
    if not folder.is_dir():
        return (stat(str(folder)),)
    out: list[Stat] = []
    pending = [str(folder)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name == "__pycache__":
                    continue
                if entry.is_dir():
                    pending.append(entry.path)
                else:
                    st = entry.stat()
                    out.append((entry.path, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def _env_digest(names: Iterable[str], environ: Mapping[str, str] | None = None) -> tuple[tuple[str, str | None], ...]:
    environ = os.environ if environ is None else environ
    out = []
    for name in sorted(set(names)):
        value = environ.get(name)
        out.append((name, None if value is None else hashlib.sha256(value.encode()).hexdigest()[:32]))
    return tuple(out)


_VERSIONS: tuple[str, ...] | None = None


def _versions() -> tuple[str, ...]:
    global _VERSIONS
    if _VERSIONS is None:
        import airflow

        from airflow_osds import __version__

        _VERSIONS = (_MAGIC.hex(), __version__, _source_stamp(), sys.version, getattr(airflow, "__version__", "?"))
    return _VERSIONS


def _source_stamp() -> str:
    """A digest of airflow-osds's own source files: an edited checkout must recompile."""
    digest = hashlib.sha256()
    for path, mtime, size in folder_files(_PACKAGE_DIR):
        if path.endswith(".py"):
            digest.update(f"{path}\0{mtime}\0{size}\n".encode())
    return digest.hexdigest()[:32]


# -- where ---------------------------------------------------------------------------------
def cache_dirs(folder: Path) -> list[Path]:
    """Candidate cache folders, in order: read from the first holding a current file, write to the first writable."""
    configured = os.environ.get(CACHE_DIR_ENV) or _configured_dir()
    if configured:
        return [Path(configured)]
    base = folder if folder.is_dir() else folder.parent
    home = Path(os.environ.get("AIRFLOW_HOME") or Path("~/airflow").expanduser())
    return [base / ".osds_cache", home / "osds_cache"]


def _configured_dir() -> str:
    try:
        from airflow.sdk import conf

        return str(conf.get("osds", "cache_dir", fallback="") or "")
    except Exception:  # outside Airflow (tools, tests of the engine)
        return ""


def _file_name(folder: Path, default_warehouse: str) -> str:
    return hashlib.sha256(f"{folder}\0{default_warehouse}".encode()).hexdigest()[:24] + ".osdsc"


# -- the cache -----------------------------------------------------------------------------
class _Header(Record):
    __slots__ = ("key", "folder", "errors", "warnings", "files", "blobs")
    key: CacheKey
    folder: str
    errors: list[PipelineSpecError]
    warnings: list[Any]
    files: list[str]  # the pipeline files found
    blobs: dict[str, tuple[int, int]]  # pipeline id → (offset, length) after the header


class CompiledCache:
    """The compiled form of one pipelines folder, read from or written to the cache."""

    def __init__(
        self, folder: Path, default_warehouse: str, path: Path | None, header: _Header, digest: str, offset: int
    ) -> None:
        self.folder = folder
        self.default_warehouse = default_warehouse
        self.path = path  # the cache file it was read from or written to (None: not persisted)
        self.header = header
        self.digest = digest  # of the header: links the build-outcome sidecar to this compilation
        self.offset = offset  # where the blobs start in the file
        self._pipelines: dict[str, CompiledPipeline] = {}
        self._outcomes: dict[str, PipelineSpecError] | None = None

    @classmethod
    def read(cls, folder: Path, default_warehouse: str) -> CompiledCache | None:
        """A current cache of ``folder``, or ``None`` (missing, stale, unreadable)."""
        name = _file_name(folder, default_warehouse)
        for directory in cache_dirs(folder):
            path = directory / name
            try:
                with path.open("rb") as f:
                    magic, size = _HEADER.unpack(f.read(_HEADER.size))
                    if magic != _MAGIC:
                        continue
                    raw = f.read(size)
                    header: _Header = pickle.loads(raw)  # noqa: S301 - our own file, 0600 (see module doc)
                    if header.key.default_warehouse != default_warehouse or not header.key.is_current(folder):
                        continue
                    return cls(folder, default_warehouse, path, header, hashlib.sha256(raw).hexdigest(), _HEADER.size + size)
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, struct.error, TypeError):
                continue
        return None

    @classmethod
    def write(cls, compiled: CompiledProject, key: CacheKey, folder: Path, *, persist: bool = True) -> CompiledCache:
        """Store ``compiled`` (unless ``persist`` is false); a folder no process can write to is
        logged, and the result still returned."""
        blobs = io.BytesIO()
        offsets = {}
        for pipeline_id, pipeline in compiled.pipelines.items():
            data = pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL)
            offsets[pipeline_id] = (blobs.tell(), len(data))
            blobs.write(data)
        header = _Header(key, compiled.folder, compiled.errors, compiled.warnings, compiled.files, offsets)
        raw = pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL)
        cache = cls(folder, key.default_warehouse, None, header, hashlib.sha256(raw).hexdigest(), _HEADER.size + len(raw))
        cache._pipelines = dict(compiled.pipelines)
        if not persist:
            return cache
        content = _HEADER.pack(_MAGIC, len(raw)) + raw + blobs.getvalue()
        name = _file_name(folder, key.default_warehouse)
        for directory in cache_dirs(folder):
            try:
                _atomic_write(directory / name, content)
            except OSError as exc:
                log.debug("compiled cache: cannot write in %s: %s", directory, exc)
                continue
            cache.path = directory / name
            break
        else:
            log.warning(
                "compiled cache: no writable folder among %s; every parse will compile the pipelines again. "
                "Set %s to a writable folder.", ", ".join(map(str, cache_dirs(folder))), CACHE_DIR_ENV,
            )
        return cache

    @property
    def errors(self) -> list[PipelineSpecError]:
        return self.header.errors

    @property
    def warnings(self) -> list[Any]:
        return self.header.warnings

    @property
    def files(self) -> list[str]:
        return self.header.files

    @property
    def pipeline_ids(self) -> list[str]:
        return list(self.header.blobs)

    def pipeline(self, pipeline_id: str) -> CompiledPipeline:
        """One compiled pipeline; from the cache file, only its own blob is unpickled."""
        pipeline = self._pipelines.get(pipeline_id)
        if pipeline is None:
            assert self.path is not None
            offset, length = self.header.blobs[pipeline_id]
            with self.path.open("rb") as f:
                f.seek(self.offset + offset)
                pipeline = self._pipelines[pipeline_id] = pickle.loads(f.read(length))  # noqa: S301
        return pipeline

    def pipelines(self) -> dict[str, CompiledPipeline]:
        if self.path is not None and len(self._pipelines) < len(self.pipeline_ids):
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
            for pipeline_id, (offset, length) in self.header.blobs.items():
                if pipeline_id not in self._pipelines:
                    self._pipelines[pipeline_id] = pickle.loads(data[offset : offset + length])  # noqa: S301
        return {pid: self._pipelines[pid] for pid in self.pipeline_ids}

    # -- build outcomes: what building a pipeline's DAG raised, seen by any process ---------
    def build_errors(self) -> dict[str, PipelineSpecError]:
        if self._outcomes is None:
            self._outcomes = self._read_outcomes() or {}
        return dict(self._outcomes)

    def record_build_outcomes(self, built: Iterable[str], failed: Mapping[str, PipelineSpecError]) -> None:
        """Remember which pipelines failed to build (and forget those that built since)."""
        recorded = self._read_outcomes() or {}
        built = set(built)
        updated = {pid: err for pid, err in recorded.items() if pid not in built} | dict(failed)
        self._outcomes = updated
        if set(updated) == set(recorded) and all(str(updated[p]) == str(recorded[p]) for p in updated):
            return
        sidecar = self._sidecar()
        if sidecar is None:
            return
        try:
            _atomic_write(sidecar, pickle.dumps((self.digest, updated), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as exc:
            log.debug("compiled cache: cannot record build outcomes in %s: %s", sidecar, exc)

    def _sidecar(self) -> Path | None:
        return self.path.with_suffix(".built") if self.path is not None else None

    def _read_outcomes(self) -> dict[str, PipelineSpecError] | None:
        sidecar = self._sidecar()
        if sidecar is None:
            return None
        try:
            digest, outcomes = pickle.loads(sidecar.read_bytes())  # noqa: S301
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError):
            return None
        return outcomes if digest == self.digest else None


def _atomic_write(path: Path, content: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
