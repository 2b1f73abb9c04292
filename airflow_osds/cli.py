"""The ``osds`` command line: ``demo``, ``validate``, ``schema``, ``graph``, ``dbt-parse``, ``version``.

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
    demo.set_defaults(handler=_demo)

    validate = sub.add_parser("validate", help="check pipeline files and the rules across them")
    validate.add_argument("paths", nargs="+", type=Path, help="pipeline folders (checked as a whole) or files")
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.add_argument("--warehouse", default="warehouse", help="default warehouse connection id")
    validate.set_defaults(handler=_validate)

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
    dbt_parse.set_defaults(handler=_dbt_parse)

    version = sub.add_parser("version", help="print the airflow-osds version")
    version.set_defaults(handler=_version)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from airflow_osds.demo import run_demo

    return run_demo(args.project_dir.resolve(), keep_running=args.keep_running, verbose=args.verbose)


def _validate(args: argparse.Namespace) -> int:
    from airflow_osds.factory.project import load_project

    files = 0
    pipelines: list[str] = []
    errors: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for path in args.paths:
        if not path.exists():
            errors.append({"file": str(path), "line": None, "column": None, "location": "", "message": "no such file or folder"})
            continue
        project = load_project(path, default_warehouse=args.warehouse)
        files += len(project.files)
        pipelines.extend(project.plans)
        errors.extend(p.as_dict(e.path) for e in project.errors for p in e.problems)
        warnings.extend(p.as_dict(file) for file, p in project.warnings)
    if args.format == "json":
        print(json.dumps({"files": files, "pipelines": sorted(pipelines), "errors": errors, "warnings": warnings}, indent=2))
    else:
        for item in errors:
            print(_render(item, "error"))
        for item in warnings:
            print(_render(item, "warning"))
        print(f"{files} file(s) checked: {len(pipelines)} valid pipeline(s), {len(errors)} error(s), {len(warnings)} warning(s)")
    return 1 if errors or not files else 0


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

    manifest = parse_project(
        args.project, target_schema=args.target_schema, target_path=args.target_path, dbt_executable=args.executable
    )
    print(f"wrote {manifest}")
    return 0


def _version(_args: argparse.Namespace) -> int:
    from airflow_osds import __version__

    print(__version__)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
