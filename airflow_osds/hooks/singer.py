"""Hook running Singer syncs whose state lives in the warehouse of an Airflow PostgreSQL connection."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook


if TYPE_CHECKING:
    import psycopg

    from airflow_osds.singer.sync import Plugin

__all__ = ["SingerHook", "plugin_environment"]

# Never handed to a tap or target: Airflow's own settings (the metadata DB URL, the fernet key,
# AIRFLOW_CONN_* URIs with passwords) and the interpreter settings of Airflow's environment.
_WITHHELD_PREFIXES = ("AIRFLOW_", "_AIRFLOW", "__AIRFLOW")  # __AIRFLOW_SUPERVISOR_FD: the task runner's
_WITHHELD = frozenset({"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"})


def plugin_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a tap or target runs with: this process's, without Airflow's settings and secrets."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k not in _WITHHELD and not k.startswith(_WITHHELD_PREFIXES)}


class SingerHook(BaseHook):
    """
    Resolves Singer taps and targets (executable, installed on first use from a pip spec into its own
    cached virtualenv; config from an Airflow connection plus settings) and keeps their state in the
    warehouse (``osds_state.singer_state``). See :mod:`airflow_osds.singer.sync` for a sync's steps.

    :param warehouse_conn_id: Airflow connection (type ``postgres``) of the warehouse holding the state.
    """

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = "warehouse"
    conn_type = "postgres"
    hook_name = "Singer EL (state on a PostgreSQL connection)"

    def __init__(self, warehouse_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.warehouse_conn_id = warehouse_conn_id
        self.secrets: list[str] = []  # connection passwords the plugins received: masked in their logs

    def get_conn(self) -> psycopg.Connection[Any]:
        """A psycopg 3 connection (autocommit) to the warehouse holding the state."""
        from airflow_osds.hooks.warehouse import connect

        return connect(self.get_connection(self.warehouse_conn_id), application_name="airflow-osds singer")

    def connection_settings(self, conn_id: str) -> dict[str, Any]:
        """The settings Airflow connection ``conn_id`` gives a plugin (:func:`~airflow_osds.singer.sync.connection_config`)."""
        from airflow_osds.singer.sync import connection_config

        connection = self.get_connection(conn_id)
        if connection.password:
            self.secrets.append(connection.password)
        return connection_config(host=connection.host, port=connection.port, login=connection.login,
                                 password=connection.password, schema=connection.schema, extra=connection.extra_dejson)

    def plugin(self, spec: Mapping[str, Any], *, base_config: Mapping[str, Any] | None = None,
               overrides: Mapping[str, Any] | None = None) -> Plugin:
        """A tap or target ready to run, from its spec (``name``, ``executable``, ``pip_url``,
        ``connection``, ``config``, ``catalog_arg``: what the ``singer`` block compiles).

        Its settings, each layer over the one before: the connection's, ``base_config`` (a Meltano
        plugin's), the spec's ``config``, ``overrides`` (the target's ``default_target_schema``).

        :raises PluginError: the executable cannot be found or installed.
        """
        from airflow_osds.singer.plugins import executable
        from airflow_osds.singer.sync import Plugin

        name = str(spec.get("name") or spec["executable"])
        config: dict[str, Any] = self.connection_settings(spec["connection"]) if spec.get("connection") else {}
        config.update(base_config or {})
        config.update(spec.get("config") or {})
        config.update(overrides or {})
        command = str(executable(str(spec["executable"]), pip_url=spec.get("pip_url")))
        return Plugin(name=name, command=(command,), config=config, catalog_arg=str(spec.get("catalog_arg") or "--catalog"))

    def meltano_settings(self, ref: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Callable[[], Any]]:
        """A Meltano project's extractor and loader settings, ``$VAR`` expanded from this worker's
        environment and cast by setting kind, and a function returning the state Meltano kept for
        them in a ``file://`` state backend (``None`` when there is none or it cannot be located).

        :param ref: ``project`` (its meltano.yml), ``environment``, ``extractor``, ``loader``, ``import_state``.
        :raises MeltanoError: the project, a plugin or a referenced variable is missing.
        """
        from pathlib import Path

        from airflow_osds.singer.meltano import MeltanoError, expand_env, load_project, read_file_state

        project = load_project(Path(ref["project"]), ref.get("environment"))
        env = project.env(os.environ)
        settings = []
        for kind, name in (("extractor", ref["extractor"]), ("loader", ref.get("loader"))):
            if not name:
                settings.append({})
                continue
            plugin = project.plugin(kind, name)
            config = plugin.runtime_config(env)
            self.secrets.extend(str(config[k]) for k in plugin.sensitive if config.get(k) not in (None, ""))
            settings.append(config)

        def imported() -> Any:
            uri = project.state_backend_uri
            if not ref.get("import_state", True) or not uri or not ref.get("loader"):
                return None
            try:
                uri = expand_env(uri, env)
                if not str(uri).startswith("file://"):
                    self.log.info("Meltano's state backend is %s, not file://: no state imported", str(uri).split(":", 1)[0])
                    return None
                return read_file_state(str(uri), project.state_id(ref["extractor"], ref["loader"], env=env))
            except MeltanoError as exc:
                self.log.warning("No Meltano state imported: %s", exc)
                return None

        return settings[0], settings[1], imported

    def sync(self, tap: Plugin, target: Plugin, *, say: Callable[[str], None] | None = None,
             on_log: Callable[[str, str], None] | None = None, **kwargs: Any) -> Any:
        """Run one sync with the state in the warehouse (:func:`airflow_osds.singer.sync.sync`); returns its report."""
        from airflow_osds.singer.sync import sync

        with self.get_conn() as conn:
            return sync(conn, tap, target, env=plugin_environment(), extra_secrets=self.secrets,
                        say=say or self.log.info, on_log=on_log or (lambda side, line: self.log.info("[%s] %s", side, line)),
                        **kwargs)
