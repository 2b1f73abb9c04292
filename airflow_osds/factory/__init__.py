"""YAML pipelines → Airflow DAGs.

Two thin DAG files in Airflow's DAG folder use this module:

- ``load_pipelines(folder, globals())`` builds one DAG per *valid* pipeline file;
- ``report_pipeline_errors(folder)`` raises, listing every invalid file with line and
  column, so Airflow shows it as an import error.

Airflow drops all DAGs of a DAG file that raises, so the two jobs need two files: a
broken pipeline is never silent and never hides the healthy ones.

Both read the folder's compiled form from the compiled cache (:mod:`.cache`); only the
first process after a change validates, plans and compiles (:func:`compile_folder`).
In steady state the DAG file builds Airflow objects and nothing else, and a task start
builds only its own pipeline.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_osds.exceptions import PipelineFolderError, PipelineSpecError

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_osds.factory.cache import CompiledCache

__all__ = ["compile_folder", "configured_folder", "load_pipelines", "report_pipeline_errors"]

log = logging.getLogger(__name__)


def load_pipelines(folder: str | Path | None = None, globals_dict: dict[str, Any] | None = None) -> dict[str, DAG]:
    """Build a DAG for each valid pipeline file under ``folder`` and bind it into ``globals_dict``.

    When Airflow parses the file to run one task (``get_parsing_context().dag_id`` is set),
    only that pipeline's DAG is built. A pipeline whose DAG fails to build is left out and
    its error recorded, so ``report_pipeline_errors`` shows it.

    :param folder: folder of pipeline files; default ``[osds] pipelines_folder``, else
        ``<dags_folder>/../include/pipelines``.
    :param globals_dict: the calling DAG file's ``globals()``.
    """
    from airflow.sdk import get_parsing_context

    from airflow_osds.factory.build import build_dag

    compiled = _compiled(folder)
    for error in compiled.errors:
        log.warning("Skipping invalid pipeline file (see report_pipeline_errors): %s", error.path)
    wanted = get_parsing_context().dag_id
    if wanted is None:
        pipelines = compiled.pipelines()
    else:  # a task start: only its own pipeline is read and built
        pipelines = {wanted: compiled.pipeline(wanted)} if wanted in compiled.pipeline_ids else {}
    dags: dict[str, DAG] = {}
    failed: dict[str, PipelineSpecError] = {}
    with gc_paused():
        for pipeline_id, pipeline in pipelines.items():
            try:
                dags[pipeline_id] = build_dag(pipeline)
            except PipelineSpecError as exc:
                log.error("Pipeline %s left out: its DAG does not build:\n%s", pipeline_id, exc)
                failed[pipeline_id] = exc
    compiled.record_build_outcomes(built=dags, failed=failed)
    if globals_dict is not None:
        globals_dict.update(dags)
        _warn_if_safe_mode_skips(globals_dict.get("__file__"))
    return dags


def _warn_if_safe_mode_skips(dag_file: str | None) -> None:
    """Airflow's safe mode only parses files holding the words "airflow" and "dag" (or "asset"):
    a loader file without them works in tests and silently shows no DAG in a deployment."""
    if not dag_file or not dag_file.endswith(".py"):
        return
    try:
        content = Path(dag_file).read_bytes().lower()
    except OSError:
        return
    if b"airflow" not in content or not (b"dag" in content or b"asset" in content):
        log.warning(
            "%s does not contain the words 'airflow' and 'dag': Airflow's DAG processor (safe mode) will skip it "
            "and show no DAG. Add a comment such as `# Airflow DAG file`.", dag_file,
        )


def report_pipeline_errors(folder: str | Path | None = None) -> None:
    """Raise ``PipelineFolderError`` if any pipeline file under ``folder`` is invalid or does not build.

    Every rule of the language is checked when the folder is compiled; a DAG that fails to
    build is reported once a process building it (the other DAG file, a worker,
    ``osds compile``) has recorded the failure. Nothing is built here.
    """
    compiled = _compiled(folder)
    errors = list(compiled.errors) + list(compiled.build_errors().values())
    if errors:
        raise PipelineFolderError(str(compiled.folder), sorted(errors, key=lambda e: e.path))


def compile_folder(
    folder: Path, *, default_warehouse: str, trial_build: bool = False, persist: bool = True
) -> CompiledCache:
    """Validate, plan and compile ``folder`` and write it to the compiled cache (unless ``persist`` is false).

    With ``trial_build``, the DAG of every pipeline using a block whose build can fail on
    input validation cannot check (``BlockType.build_can_fail``: arbitrary operator
    arguments) is built once, not registered, and the failures recorded: what ``osds
    compile`` and ``osds validate`` do, so build errors are known before any DAG processor
    runs. Validation vouches for the other blocks.
    """
    from airflow_osds.factory.cache import CompiledCache, make_key
    from airflow_osds.factory.compile import compile_project
    from airflow_osds.factory.project import load_project

    project = load_project(folder, default_warehouse=default_warehouse)
    compiled = compile_project(project)
    key = make_key(
        folder, default_warehouse=default_warehouse, dependencies=project.dependencies, env_names=project.env_names
    )
    cache = CompiledCache.write(compiled, key, folder, persist=persist)
    if trial_build:
        from airflow_osds.factory.blocks import BLOCKS
        from airflow_osds.factory.build import build_dag

        failed: dict[str, PipelineSpecError] = {}
        built: list[str] = []
        for pipeline_id, pipeline in compiled.pipelines.items():
            if not any(BLOCKS[step.spec.block_name].build_can_fail for step in project.plans[pipeline_id].tasks()):
                continue
            try:
                build_dag(pipeline, register=False)
                built.append(pipeline_id)
            except PipelineSpecError as exc:
                failed[pipeline_id] = exc
        cache.record_build_outcomes(built=built, failed=failed)
    return cache


def configured_folder(folder: str | Path | None = None) -> tuple[Path, str]:
    """The pipelines folder (``folder``, else ``[osds] pipelines_folder``, else
    ``<dags_folder>/../include/pipelines``) and the default warehouse connection id, as the DAG
    files see them: what every other reader of the pipelines (the UI view) must use too."""
    from airflow.sdk import conf

    pipelines_dir = (Path(folder) if folder else _default_folder(conf)).resolve()
    return pipelines_dir, conf.get("osds", "default_warehouse_conn_id", fallback="warehouse")


def _compiled(folder: str | Path | None) -> CompiledCache:
    from airflow_osds.factory.cache import CompiledCache

    pipelines_dir, default_warehouse = configured_folder(folder)
    with gc_paused():
        cached = CompiledCache.read(pipelines_dir, default_warehouse)
        if cached is not None:
            return cached
        return compile_folder(pipelines_dir, default_warehouse=default_warehouse)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the factory allocates.

    After ``import airflow`` the heap holds about a million objects, so each full
    collection the allocations of a compile or a build trigger costs ~90 ms. What the
    factory allocates is kept (the DAGs) or freed by reference counting; the collector runs
    again afterwards.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _default_folder(conf: Any) -> Path:
    configured = conf.get("osds", "pipelines_folder", fallback="")
    if configured:
        return Path(configured)
    return Path(conf.get("core", "dags_folder")).parent / "include" / "pipelines"


def __getattr__(name: str) -> Any:
    # `from airflow_osds.factory import load_project` kept working; importing it eagerly would
    # pull the YAML, pydantic and planner modules into every steady-state parse.
    if name == "load_project":
        from airflow_osds.factory.project import load_project

        return load_project
    raise AttributeError(name)
