"""The ``osds`` command line: ``osds demo``, ``osds validate``, ``osds version``.

Airflow is imported lazily (``osds demo`` must set Airflow's environment first).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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

    validate = sub.add_parser("validate", help="check pipeline YAML files")
    validate.add_argument("paths", nargs="+", type=Path, help="pipeline files or folders")
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.set_defaults(handler=_validate)

    version = sub.add_parser("version", help="print the airflow-osds version")
    version.set_defaults(handler=_version)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from airflow_osds.demo import run_demo

    return run_demo(args.project_dir.resolve(), keep_running=args.keep_running, verbose=args.verbose)


def _validate(args: argparse.Namespace) -> int:
    from airflow_osds.exceptions import PipelineSpecError
    from airflow_osds.factory.loader import find_pipeline_files, parse_pipeline_file

    files: list[Path] = []
    for path in args.paths:
        files.extend(find_pipeline_files(path) if path.is_dir() else [path])
    errors: list[PipelineSpecError] = []
    for file in files:
        try:
            parse_pipeline_file(file)
        except PipelineSpecError as exc:
            errors.append(exc)
        except OSError as exc:
            errors.append(PipelineSpecError(str(file), []))
            print(f"{file}: cannot read: {exc.strerror}", file=sys.stderr)
    if args.format == "json":
        problems = [p.as_dict(e.path) for e in errors for p in e.problems]
        print(json.dumps({"files": len(files), "errors": problems}, indent=2))
    else:
        for exc in errors:
            print(exc)
        print(f"{len(files)} file(s) checked, {len(errors)} invalid")
    return 1 if errors or not files else 0


def _version(_args: argparse.Namespace) -> int:
    from airflow_osds import __version__

    print(__version__)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
