"""``singer``: run a Singer tap into a Singer target (``tap | target``), each from its own virtualenv, with
the state kept in the warehouse; or the extractor and loader of a Meltano project, without Meltano."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from airflow_osds.assets import TableRef
from airflow_osds.factory.blocks import BlockType, DataIO, FieldProblem, ProviderModules, StepContext
from airflow_osds.factory.compiled import TaskNode
from airflow_osds.factory.types import Duration, Strict
from airflow_osds.singer import OSDS_TARGET

DEFAULT_SCHEMA = "raw"


class SingerPlugin(Strict):
    """A Singer target: an executable, from a pip spec installed in its own cached virtualenv or already installed."""

    executable: str | None = Field(None, description="The command (default: the plugin's `name`).",
                                   examples=["target-postgres", "/opt/taps/bin/tap-github"])
    name: str | None = Field(None, description="What state ids and logs call it (default: the executable's name).")
    pip_url: str | None = Field(None, description="pip requirement(s) to install it from, into its own virtualenv "
                                "(Meltano's `pip_url`); without one the executable must be on PATH.",
                                examples=["meltanolabs-target-postgres==0.8.1"])
    connection: str | None = Field(None, description="Airflow connection whose host, port, login (`user`), password "
                                   "and schema (`database`, `dbname`) and extras become settings.")
    config: dict[str, Any] = Field(default_factory=dict, description="Settings (templated: `{{ conn.x.password }}`, "
                                   "`{{ var.value.token }}`); they win over the connection's.")


class SingerTap(SingerPlugin):
    """A Singer tap, and which of its streams to sync."""

    select: list[str] = Field(default_factory=list, description="Meltano-style `stream.property` patterns "
                              "(globs; `!` excludes). With a selection the tap's catalog is discovered first.",
                              examples=[["public-customers.*", "!public-customers.email"]])
    metadata: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Catalog metadata per stream "
                                                "pattern, e.g. the replication method and key.",
                                                examples=[{"public-orders": {"replication-key": "updated_at"}}])
    catalog: str | None = Field(None, description="A catalog file (relative to the pipeline file) used instead of discovery.")
    catalog_arg: Literal["--catalog", "--properties"] = Field("--catalog", description="How the tap takes a catalog "
                                                               "(`--properties` for legacy taps).")


class MeltanoSource(Strict):
    """The extractor and loader of a Meltano project (its meltano.yml), run without Meltano."""

    project: str = Field(description="The project's meltano.yml, relative to the pipeline file.")
    extractor: str = Field(description="The extractor plugin's name.")
    loader: str | None = Field(None, description=f"The loader plugin's name (default: {OSDS_TARGET} on the warehouse).")
    environment: str | None = Field(None, description="The Meltano environment (default: the project's default).")
    import_state: bool = Field(True, description="When this step has no state yet, start from the state Meltano "
                               "kept in the project's `file://` state backend, if there is one.")


class SingerBlock(Strict):
    """Sync a Singer tap into a Singer target: ``tap | target`` joined by an OS pipe, each from its own
    virtualenv. The target commits, then prints the state, which is stored in the warehouse
    (``osds_state.singer_state``) and passed back with ``--state`` on the next run, so a failed run
    resumes from the last committed point. Each stream's table ``<schema>.<table>`` is an output.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    tap: SingerTap | None = Field(None, description="The tap (or, with `meltano`, settings over the extractor's).")
    target: SingerPlugin | None = Field(None, description=f"The target (default: {OSDS_TARGET}, this package's COPY "
                                        "target, on the warehouse).")
    meltano: MeltanoSource | None = Field(None, description="Take the tap and target from a Meltano project.")
    schema_: str | None = Field(None, alias="schema", description="The schema the target loads into (its "
                                f"`default_target_schema`; default: the loader's, else `{DEFAULT_SCHEMA}`).")
    streams: list[str] = Field(default_factory=list, description="Stream ids whose tables this step declares as "
                               "outputs, beyond those its `select` names literally.", examples=[["events"]])
    state_id: str | None = Field(None, description="The state id (default `<pipeline>:<step>:<tap>-to-<target>`; templated).")
    full_refresh: bool | str = Field(False, description="Clear the state first and sync everything again "
                                     "(templated, e.g. `{{ params.full_refresh }}`).")
    timeout: Duration | None = Field(None, description="Stop both processes (and fail) after this long.")
    warehouse: str | None = Field(None, description="Connection id where the state is kept and the default target "
                                  "loads; overrides defaults.warehouse.")

    @model_validator(mode="after")
    def _one_source(self) -> SingerBlock:
        if self.meltano is None and self.tap is None:
            raise ValueError("a singer step needs a `tap` (executable, pip_url, config…) or a `meltano` project")
        if self.meltano is None and self.tap is not None and not (self.tap.executable or self.tap.name):
            raise ValueError("the tap needs its `executable` (or `name`), e.g. executable: tap-postgres")
        return self


def _merged(base: dict[str, Any], over: SingerPlugin | None) -> dict[str, Any]:
    """A plugin's settings: ``base`` (a Meltano plugin, or nothing) with what the step says over it."""
    if over is None:
        return base
    out = dict(base)
    for key, value in over.model_dump(exclude_unset=True).items():
        out[key] = {**out.get(key, {}), **value} if key == "config" else value
    return out


def resolve(block: SingerBlock, ctx: StepContext) -> dict[str, Any]:
    """The operator's plugin arguments: ``tap``, ``target``, ``schema`` and, for a Meltano project, ``meltano``
    (where its plugins' settings are read at run time, when their ``$VAR`` references can be expanded).

    :raises FieldProblem: the Meltano project or a catalog file cannot be used.
    """
    tap: dict[str, Any] = {}
    target: dict[str, Any] = {}
    meltano = None
    loader_config: dict[str, Any] = {}
    if block.meltano is not None:
        from airflow_osds.singer.meltano import MeltanoError, load_project

        path = ctx.path(block.meltano.project)
        ctx.depend_on(path)
        try:
            project = load_project(path, block.meltano.environment)
            extractor = project.plugin("extractor", block.meltano.extractor)
            loader = project.plugin("loader", block.meltano.loader) if block.meltano.loader else None
        except MeltanoError as exc:
            raise FieldProblem("meltano", str(exc)) from None
        except OSError as exc:
            raise FieldProblem(("meltano", "project"), f"cannot read {path}: {exc.strerror}") from None
        for dependency in project.files:
            ctx.depend_on(Path(dependency))
        # Settings stay in meltano.yml: read at run time, with `$VAR` expanded from the worker's environment.
        tap = {"name": extractor.name, "executable": extractor.executable, "pip_url": extractor.pip_url,
               "select": list(extractor.select), "metadata": dict(extractor.metadata), "catalog_arg": extractor.catalog_arg}
        if loader is not None:
            target = {"name": loader.name, "executable": loader.executable, "pip_url": loader.pip_url}
            loader_config = dict(loader.config)
        meltano = {"project": str(path), "environment": block.meltano.environment, "extractor": extractor.name,
                   "loader": loader.name if loader else None, "import_state": block.meltano.import_state}
    tap = _merged(tap, block.tap)
    target = _merged(target, block.target)
    if not target.get("executable") and not target.get("name"):
        target = {**target, "executable": OSDS_TARGET, "name": OSDS_TARGET}
    if target.get("executable") == OSDS_TARGET or (block.meltano is None and "connection" not in target):
        target.setdefault("connection", ctx.warehouse)
    for plugin in (tap, target):
        plugin["executable"] = plugin.get("executable") or plugin.get("name")
        plugin["name"] = plugin.get("name") or str(plugin["executable"]).rsplit("/", 1)[-1]
    if tap.get("catalog"):
        catalog_path = ctx.path(tap["catalog"])
        ctx.depend_on(catalog_path)
        tap["catalog"] = str(catalog_path)
    schema = (block.schema_ or _plain(target.get("config", {}).get("default_target_schema"))
              or _plain(loader_config.get("default_target_schema")) or DEFAULT_SCHEMA)
    return {"tap": tap, "target": target, "schema": schema, "meltano": meltano}


def _plain(value: Any) -> str | None:
    return value if isinstance(value, str) and value and "{{" not in value and "$" not in value else None


def _stream_ids(block: SingerBlock, plugins: dict[str, Any], ctx: StepContext) -> tuple[list[str], list[str]]:
    """The streams whose tables are known from the YAML alone, and notes on those that are not."""
    from airflow_osds.singer.catalog import CatalogError, apply, selected_streams, stream_names

    tap = plugins["tap"]
    notes: list[str] = []
    if tap.get("catalog"):
        try:
            catalog = json.loads(ctx.read_file(tap["catalog"]))  # absolute: resolve() made it so
            if tap.get("select") or tap.get("metadata"):
                catalog = apply(catalog, tap.get("select", []), tap.get("metadata", {}))
            named = selected_streams(catalog)
        except (ValueError, CatalogError) as exc:
            raise FieldProblem(("tap", "catalog"), f"{tap['catalog']}: {exc}") from None
        except OSError as exc:
            raise FieldProblem(("tap", "catalog"), f"cannot read {tap['catalog']}: {exc.strerror}") from None
        globbed: list[str] = []
    else:
        named, globbed = stream_names(tap.get("select", []))
    if globbed:
        notes.append(f"the tables of streams matching {', '.join(globbed)} are known only after discovery, so they "
                     "are not declared as outputs: list the streams under `streams:` to declare them")
    streams = list(dict.fromkeys([*named, *block.streams]))
    if not streams and not globbed:
        notes.append("no stream is named (no `select`, `streams` or catalog), so the step declares no table: list "
                     "the tap's streams under `streams:` so steps that read them run after it")
    return streams, notes


def data(block: SingerBlock, ctx: StepContext) -> DataIO:
    from airflow_osds.singer import table_name

    plugins = resolve(block, ctx)
    streams, notes = _stream_ids(block, plugins, ctx)
    conn_id = plugins["target"].get("connection") or ctx.warehouse
    writes = frozenset(TableRef(conn_id, plugins["schema"], table_name(s)) for s in streams)
    return DataIO(writes=writes, notes=tuple(notes))


def compile_task(block: SingerBlock, ctx: StepContext) -> TaskNode:
    plugins = resolve(block, ctx)
    kwargs: dict[str, Any] = {
        "tap": plugins["tap"],
        "target": plugins["target"],
        "schema": plugins["schema"],
        "warehouse_conn_id": ctx.warehouse,
        "full_refresh": block.full_refresh,
    }
    if block.state_id:
        kwargs["state_id"] = block.state_id
    if plugins["meltano"]:
        kwargs["meltano"] = plugins["meltano"]
    if block.timeout is not None:
        kwargs["timeout"] = block.timeout.total_seconds()
    return ctx.task("airflow_osds.operators.singer.SingerOperator", kwargs)


BLOCK = BlockType(
    name="singer",
    model=SingerBlock,
    description="Sync a Singer tap into a Singer target (or a Meltano project's extractor and loader).",
    compile=compile_task,
    data=data,
    warehouse_field="warehouse",
    provides=ProviderModules(
        integration="Singer",
        operators=("airflow_osds.operators.singer",),
        hooks=("airflow_osds.hooks.singer",),
        external_doc_url="https://hub.meltano.com/singer/spec",
    ),
)
