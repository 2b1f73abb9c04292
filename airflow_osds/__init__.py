"""airflow-osds: an Apache Airflow provider for the open-source data stack.

Importing this package must stay cheap and must not import Airflow: the engine
sub-packages (``airflow_osds.<component>``) are used by tools and tests that run
without Airflow. The Airflow version check therefore reads package metadata only.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

__version__ = "0.1.0"

_MIN_AIRFLOW = (3, 3)


def _check_airflow_version() -> None:
    try:
        installed = version("apache-airflow-core")
    except PackageNotFoundError:  # engine-only use: Airflow is optional here
        return
    major_minor = tuple(int(p) for p in installed.split(".")[:2] if p.isdigit())
    if major_minor < _MIN_AIRFLOW:
        raise RuntimeError(
            f"The package airflow-osds:{__version__} needs Apache Airflow 3.3+, "
            f"but apache-airflow-core {installed} is installed."
        )


_check_airflow_version()
