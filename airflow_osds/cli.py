"""The ``osds`` command line: ``demo``, ``run``, ``validate``, ``compile``, ``schema``, ``graph``, ``dbt-parse``, ``singer``, ``version``.

Airflow is imported lazily (``osds demo`` must set Airflow's environment first).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    return int(args.handler(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osds", description="Open-source data stack pipelines for Airflow.")
    sub = parser.add_subparsers(title="commands")

    demo = sub.add_parser("demo", help="run the demo pipelines end to end on the embedded PostgreSQL")
    demo.add_argument("--project-dir", type=Path, default=Path.cwd(), help="project root (holds dags/ and include/)")
    demo.add_argument("--keep-running", action="store_true", help="leave PostgreSQL running afterwards")
    demo.add_argument("-v", "--verbose", action="store_true", help="show Airflow's task logs")
    demo.add_argument("--no-superset", dest="superset", action="store_false",
                      help="do not start Superset; the pipelines that refresh it are not run (a quicker demo)")
    demo.set_defaults(handler=_demo)

    run = sub.add_parser("run", help="run one pipeline (or one step and what it runs after) on the embedded PostgreSQL")
    run.add_argument("pipeline", help="the pipeline's id (its DAG id)")
    run.add_argument("--step", help="only this step (a task or group id) and the steps it runs after")
    run.add_argument("--project-dir", type=Path, default=Path.cwd(), help="project root (holds dags/ and include/)")
    run.add_argument("--no-superset", dest="superset", action="store_false",
                     help="do not start Superset; steps that refresh it are not run")
    run.add_argument("--keep-running", action="store_true", help="leave PostgreSQL (and Superset) running afterwards")
    run.add_argument("--retries", action="store_true",
                     help="keep the pipeline's retries (by default a failing task fails the run at once)")
    run.add_argument("-v", "--verbose", action="store_true", help="show Airflow's task logs")
    run.set_defaults(handler=_run)

    up = sub.add_parser("up", help="run the project on Airflow's real scheduler (api-server, scheduler, "
                        "dag-processor, triggerer) until Ctrl-C or osds down")
    up.add_argument("--project-dir", type=Path, default=Path.cwd(), help="project root (holds dags/ and include/)")
    up.add_argument("--port", type=int, default=8080, help="the api-server's (UI's) port on 127.0.0.1")
    up.set_defaults(handler=_up)

    down = sub.add_parser("down", help="stop what osds up started")
    down.add_argument("--project-dir", type=Path, default=Path.cwd(), help="project root (holds dags/ and include/)")
    down.set_defaults(handler=_down)

    validate = sub.add_parser("validate", help="check pipeline files and the rules across them")
    validate.add_argument("paths", nargs="+", type=Path, help="pipeline folders (checked as a whole) or files")
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.add_argument("--warehouse", default="warehouse", help="default warehouse connection id")
    validate.set_defaults(handler=_validate)

    compile_ = sub.add_parser(
        "compile", help="validate, compile and build-check pipeline folders into the compiled cache (for images)"
    )
    compile_.add_argument("paths", nargs="+", type=Path, help="pipeline folders, as the DAG files name them")
    compile_.add_argument("--warehouse", default=None, help="default warehouse connection id (default: [osds] config)")
    compile_.set_defaults(handler=_compile)

    schema = sub.add_parser("schema", help="write the JSON Schema of pipeline files (for editors)")
    schema.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    schema.add_argument("--defaults", action="store_true", help="the schema of defaults.yml files instead")
    schema.set_defaults(handler=_schema)

    graph = sub.add_parser("graph", help="print the cross-pipeline data graph as Mermaid")
    graph.add_argument("path", type=Path, help="pipelines folder")
    graph.add_argument("--warehouse", default="warehouse", help="default warehouse connection id")
    graph.set_defaults(handler=_graph)

    dbt_parse = sub.add_parser("dbt-parse", help="write a dbt project's manifest.json for the DAG factory")
    dbt_parse.add_argument("project", type=Path, help="dbt project directory")
    dbt_parse.add_argument("--target-schema", default="public", help="schema models without a custom schema go to")
    dbt_parse.add_argument("--target-path", type=Path, help="where manifest.json goes (default: <project>/target)")
    dbt_parse.add_argument("--executable", help="a dbt executable or virtualenv (default: dbt in this Python)")
    dbt_parse.add_argument(
        "--connection", metavar="CONN_ID",
        help="the Airflow connection the steps run on (read as Airflow reads it; no password is used): "
        "its fields let every task reuse this parse (dbt partial parsing)",
    )
    dbt_parse.add_argument(
        "--vars", type=_json_object, default=None,
        help="dbt --vars as a JSON or YAML mapping, e.g. '{enable_web: true}'; steps must use the same vars",
    )
    dbt_parse.set_defaults(handler=_dbt_parse)

    singer = sub.add_parser("singer", help="Singer EL: the state kept in the warehouse")
    singer_sub = singer.add_subparsers(title="singer commands", required=True)
    state = singer_sub.add_parser("state", help="list, show, set or clear Singer state (osds_state.singer_state)")
    state.add_argument("action", choices=("list", "get", "set", "clear"))
    state.add_argument("state_id", nargs="?", help="the state id (all but list), e.g. crm:extract:tap-postgres-to-target")
    state.add_argument("value", nargs="?", help="set: the state as JSON, or @file.json")
    state.add_argument("--connection", default="warehouse", metavar="CONN_ID",
                       help="the Airflow connection of the warehouse holding the state (default: warehouse)")
    state.set_defaults(handler=_singer_state)
    install = singer_sub.add_parser(
        "install", help="build the virtualenvs of every tap and target the pipelines name (for Docker images)")
    install.add_argument("paths", nargs="+", type=Path, help="pipeline folders")
    install.add_argument("--warehouse", default="warehouse", help="default warehouse connection id")
    install.set_defaults(handler=_singer_install)

    sync = sub.add_parser("sync", help="reverse ETL: show what a sync step would send (--dry-run), sending nothing")
    sync.add_argument("path", type=Path, help="pipelines folder")
    sync.add_argument("step", help="the sync step as <pipeline>.<step> (a step in a group: <pipeline>.<group>.<step>)")
    sync.add_argument("--dry-run", action="store_true", required=True,
                      help="compute the changes and print them; nothing is sent or recorded (required: syncs "
                      "send from Airflow, where templates are rendered and runs are recorded)")
    sync.add_argument("--limit", type=int, default=20, help="records to show (default: 20)")
    sync.add_argument("--full-resync", action="store_true", help="as a full resync would: every record")
    sync.add_argument("--warehouse", default="warehouse", help="default warehouse connection id")
    sync.set_defaults(handler=_sync)

    version = sub.add_parser("version", help="print the airflow-osds version")
    version.set_defaults(handler=_version)
    return parser


def _local_command(command: str) -> None:
    """Exit with the install hint when ``osds <command>`` runs without the ``[local]`` extra."""
    from airflow_osds.exceptions import LocalExtraMissing
    from airflow_osds.local_extra import require_local_extra

    try:
        require_local_extra(command)
    except LocalExtraMissing as exc:
        raise SystemExit(f"osds: {exc}") from None


def _demo(args: argparse.Namespace) -> int:
    _local_command("demo")
    from airflow_osds.demo import run_demo

    return run_demo(args.project_dir.resolve(), keep_running=args.keep_running, verbose=args.verbose,
                    superset=args.superset)


def _run(args: argparse.Namespace) -> int:
    _local_command("run")
    from airflow_osds.demo import run_pipeline

    return run_pipeline(args.project_dir.resolve(), args.pipeline, step=args.step, superset=args.superset,
                        keep_running=args.keep_running, verbose=args.verbose, retries=args.retries)


def _up(args: argparse.Namespace) -> int:
    _local_command("up")
    from airflow_osds.up import run_up

    return run_up(args.project_dir.resolve(), port=args.port)


def _down(args: argparse.Namespace) -> int:
    _local_command("down")
    from airflow_osds.up import run_down

    return run_down(args.project_dir.resolve())


def _validate(args: argparse.Namespace) -> int:
    report = _check_folders(args.paths, args.warehouse, persist=False)
    if args.format == "json":
        print(json.dumps({k: report[k] for k in ("files", "pipelines", "errors", "warnings")}, indent=2))
    else:
        _print_report(report)
    return 1 if report["errors"] or not report["files"] else 0


def _compile(args: argparse.Namespace) -> int:
    from airflow_osds.factory.cache import CACHE_DIR_ENV

    report = _check_folders(args.paths, args.warehouse or _configured_warehouse(), persist=True)
    _print_report(report)
    for folder, written in report["written"]:
        where = written or f"nowhere: no writable cache folder (set {CACHE_DIR_ENV})"
        print(f"compiled {folder} → {where}")
    return 1 if report["errors"] or not report["files"] or not all(w for _, w in report["written"]) else 0


def _check_folders(paths: list[Path], warehouse: str, *, persist: bool) -> dict[str, Any]:
    """Every rule, across files, plus a trial build of each DAG: what Airflow would report."""
    from airflow_osds.factory import compile_folder

    report: dict[str, Any] = {"files": 0, "pipelines": [], "errors": [], "warnings": [], "written": []}
    for path in paths:
        if not path.exists():
            report["errors"].append(
                {"file": str(path), "line": None, "column": None, "location": "", "message": "no such file or folder"}
            )
            continue
        cache = compile_folder(path.resolve(), default_warehouse=warehouse, trial_build=True, persist=persist)
        build_errors = cache.build_errors()
        report["files"] += len(cache.files)
        report["pipelines"].extend(p for p in cache.pipeline_ids if p not in build_errors)
        for error in [*cache.errors, *build_errors.values()]:
            report["errors"].extend(p.as_dict(error.path) for p in error.problems)
        report["warnings"].extend(p.as_dict(file) for file, p in cache.warnings)
        report["written"].append((str(path), str(cache.path) if cache.path else None))
    report["pipelines"].sort()
    return report


def _print_report(report: dict[str, Any]) -> None:
    for item in report["errors"]:
        print(_render(item, "error"))
    for item in report["warnings"]:
        print(_render(item, "warning"))
    print(
        f"{report['files']} file(s) checked: {len(report['pipelines'])} valid pipeline(s), "
        f"{len(report['errors'])} error(s), {len(report['warnings'])} warning(s)"
    )


def _configured_warehouse() -> str:
    from airflow.sdk import conf

    return str(conf.get("osds", "default_warehouse_conn_id", fallback="warehouse"))


def _render(item: dict[str, Any], level: str) -> str:
    where = f"{item['file']}:{item['line']}:{item['column']}" if item["line"] else item["file"]
    at = f" ({item['location']})" if item["location"] else ""
    return f"{where}: {level}: {item['message']}{at}"


def _schema(args: argparse.Namespace) -> int:
    from airflow_osds.factory.spec import FolderDefaults, PipelineSpec

    model = FolderDefaults if args.defaults else PipelineSpec
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", **model.model_json_schema()}
    text = json.dumps(schema, indent=2) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}; add to pipeline files: # yaml-language-server: $schema={args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _graph(args: argparse.Namespace) -> int:
    from airflow_osds.factory.graph import mermaid
    from airflow_osds.factory.project import load_project

    project = load_project(args.path, default_warehouse=args.warehouse)
    sys.stdout.write(mermaid(project))
    for error in project.errors:
        print(f"left out (invalid): {error.path}", file=sys.stderr)
    return 0


def _dbt_parse(args: argparse.Namespace) -> int:
    from airflow_osds.dbt.manifest_build import parse_project

    connection = None
    if args.connection:
        from airflow_osds.hooks.dbt import DbtHook

        connection = DbtHook(args.connection, target_schema=args.target_schema).get_conn()
    manifest = parse_project(
        args.project, target_schema=args.target_schema, target_path=args.target_path, dbt_executable=args.executable,
        vars=args.vars, connection=connection,
    )
    print(f"wrote {manifest}")
    return 0


def _singer_state(args: argparse.Namespace) -> int:
    from airflow.sdk import BaseHook

    from airflow_osds.hooks.warehouse import connect
    from airflow_osds.singer import state

    if args.action != "list" and not args.state_id:
        print(f"osds singer state {args.action}: give the state id (see: osds singer state list)", file=sys.stderr)
        return 2
    if args.action == "set" and args.value is None:
        print("osds singer state set: give the state as JSON, or @file.json", file=sys.stderr)
        return 2
    value: Any = None
    if args.action == "set":
        text = Path(args.value[1:]).read_text() if args.value.startswith("@") else args.value
        try:
            value = json.loads(text)
        except ValueError as exc:
            print(f"osds singer state set: the state is not JSON: {exc}", file=sys.stderr)
            return 2
        if isinstance(value, dict) and set(value) == {"singer_state"}:
            value = value["singer_state"]  # what `meltano state get <id>` prints: the state is inside
            print("(unwrapped Meltano's {\"singer_state\": …})", file=sys.stderr)
    with connect(BaseHook.get_connection(args.connection), application_name="osds singer state") as conn:
        if args.action == "list":
            for stored in state.list_states(conn):
                print(f"{stored.state_id}\t{stored.updated_at.isoformat(timespec='seconds')}\t{stored.size} bytes")
        elif args.action == "get":
            found = state.get(conn, args.state_id)
            if found is None:
                print(f"no state for {args.state_id!r}", file=sys.stderr)
                return 1
            print(json.dumps(found, indent=2))
        elif args.action == "set":
            state.put(conn, args.state_id, value)
            print(f"state of {args.state_id} set")
        else:
            print(f"state of {args.state_id} cleared" if state.clear(conn, args.state_id)
                  else f"{args.state_id} had no state")
    return 0


def _json_object(text: str) -> dict[str, Any]:
    import yaml

    try:
        value = yaml.safe_load(text)  # JSON is YAML; dbt itself takes --vars as YAML
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"not a YAML/JSON mapping: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{key: value}}', got {text!r}")
    return value


def _version(_args: argparse.Namespace) -> int:
    from airflow_osds import __version__

    print(__version__)
    return 0


def _singer_install(args: argparse.Namespace) -> int:
    from airflow_osds.factory.compile import compile_project
    from airflow_osds.factory.project import load_project
    from airflow_osds.singer.plugins import PluginError, executable
    from airflow_osds.venvs import cache_dir

    plugins: dict[tuple[str, str], list[str]] = {}  # (executable, pip_url) → the steps using it
    invalid = 0
    for path in args.paths:
        compiled = compile_project(load_project(path.resolve(), default_warehouse=args.warehouse))
        invalid += len(compiled.errors)
        for error in compiled.errors:
            print(f"left out (invalid): {error.path}", file=sys.stderr)
        for pipeline in compiled.pipelines.values():
            for node in _task_nodes(pipeline.nodes):
                if node.operator != "airflow_osds.operators.singer.SingerOperator":
                    continue
                for side in ("tap", "target"):
                    spec = node.kwargs.get(side) or {}
                    if spec.get("pip_url") and "{{" not in str(spec["pip_url"]):
                        plugins.setdefault((str(spec["executable"]), str(spec["pip_url"])), []).append(
                            f"{pipeline.dag_id}.{node.id}")
    failed = 0
    print(f"virtualenv cache: {cache_dir()}")
    for (name, pip_url), steps in sorted(plugins.items()):
        try:
            found = executable(name, pip_url=pip_url)
            print(f"ok      {name} from {pip_url!r}: {found} (used by {', '.join(steps)})")
        except PluginError as exc:
            failed += 1
            print(f"FAILED  {name} from {pip_url!r}: {exc}", file=sys.stderr)
    print(f"{len(plugins)} plugin(s), {failed} failed" + (f"; {invalid} invalid pipeline file(s) left out" if invalid else ""))
    return 1 if failed or invalid else 0


def _sync(args: argparse.Namespace) -> int:
    from airflow_osds.factory.compile import compile_project
    from airflow_osds.factory.project import load_project
    from airflow_osds.hooks.reverse_etl import ReverseEtlHook
    from airflow_osds.reverse_etl.preview import describe_preview
    from airflow_osds.reverse_etl.spec import spec_from_settings

    compiled = compile_project(load_project(args.path.resolve(), default_warehouse=args.warehouse))
    syncs = {f"{pipeline.dag_id}.{node.id}": node for pipeline in compiled.pipelines.values()
             for node in _task_nodes(pipeline.nodes)
             if node.operator == "airflow_osds.operators.reverse_etl.ReverseEtlSyncOperator"}
    node = syncs.get(args.step)
    if node is None:
        broken = "".join(f"\n  invalid, left out: {e.path}" for e in compiled.errors)
        known = ", ".join(sorted(syncs)) or "none"
        print(f"osds sync: no reverse_etl step {args.step!r} in {args.path} (sync steps: {known}){broken}",
              file=sys.stderr)
        return 2
    kwargs = node.kwargs
    templated = [name for name in ("source", "fields", "groups") if "{{" in json.dumps(kwargs.get(name), default=str)]
    if templated:
        print(f"osds sync: {args.step} has templates in {', '.join(templated)}, which only Airflow renders; "
              "preview it from a task instead (ReverseEtlSyncOperator(dry_run=True))", file=sys.stderr)
        return 2
    spec = spec_from_settings(sync_id=kwargs.get("sync_id") or args.step, source=kwargs["source"],
                              fields=kwargs["fields"], mode=kwargs.get("mode", "upsert"), groups=kwargs.get("groups"),
                              group_field=kwargs.get("group_field"))
    preview = ReverseEtlHook(kwargs.get("warehouse_conn_id", args.warehouse)).preview(
        spec, limit=args.limit, full_resync=args.full_resync)
    destination = kwargs["destination"]
    print(f"{args.step} (sync id {spec.sync_id}, {spec.mode} → {destination.get('kind')} on "
          f"{destination.get('connection')}); dry run, nothing sent:")
    print(describe_preview(preview))
    return 0


def _task_nodes(nodes: list[Any]) -> list[Any]:
    out = []
    for node in nodes:
        out.extend(_task_nodes(node.children) if hasattr(node, "children") else [node])
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
