"""Meltano projects without Meltano: plugin resolution, environments, errors, $VAR expansion, file state."""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import pytest

from airflow_osds.exceptions import OsdsError
from airflow_osds.singer.meltano import (
    MeltanoError,
    MeltanoPlugin,
    expand_env,
    load_project,
    read_file_state,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "meltano"
MAIN = str(FIXTURE / "meltano.yml")
LOADERS = str(FIXTURE / "plugins" / "loaders.meltano.yml")
NOT_READ = "meltano.yml `env:` blocks and .env files are not read: set it in the task's environment"
HUB = "Meltano Hub, which is not reachable by us"


def write(folder: Path, text: str, name: str = "meltano.yml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(call, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(MeltanoError) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, OsdsError)
    return str(info.value)


# --- the fixture project: tap-jsonl + the loaders of its included file, environments dev and prod ---


TAP_JSONL_SETTINGS = {"path": "string", "stream_name": "string", "primary_keys": "array", "emit_state_every": "integer"}


def test_fixture_project_in_its_default_environment() -> None:
    project = load_project(FIXTURE)
    assert (project.path, project.root, project.environment, project.environments) == (
        Path(MAIN), FIXTURE, "dev", ("dev", "prod"))
    assert project.files == (Path(MAIN), Path(LOADERS))
    assert project.state_backend_uri == "file://${MELTANO_PROJECT_ROOT}/.meltano/state"
    assert project.state_id_suffix is None
    assert project.names("extractor") == ("tap-jsonl", "tap-jsonl-orders")
    assert project.names("loader") == ("target-osds", "target-postgres")
    assert project.plugin("extractor", "tap-jsonl") == MeltanoPlugin(
        kind="extractor",
        name="tap-jsonl",
        executable="tap-jsonl",
        pip_url="tap-jsonl==0.3.1",
        config={"path": "${DATA_DIR}/*.jsonl", "stream_name": "events_dev", "primary_keys": ["id"],
                "emit_state_every": "$EMIT_STATE_EVERY"},
        select=(),
        metadata={"events": {"replication-method": "INCREMENTAL"}},
        capabilities=("catalog", "discover", "state", "about"),
        catalog_arg="--catalog",
        setting_kinds=TAP_JSONL_SETTINGS,
        sensitive=frozenset(),
        file=MAIN,
        line=42,
    )
    assert project.plugin("extractor", "tap-jsonl-orders") == MeltanoPlugin(
        kind="extractor",
        name="tap-jsonl-orders",
        executable="tap-jsonl",
        pip_url="tap-jsonl==0.3.1",
        config={"path": "${DATA_DIR}/orders/*.jsonl", "stream_name": "orders", "primary_keys": ["id"],
                "emit_state_every": "$EMIT_STATE_EVERY"},
        select=("orders.*",),
        metadata={"events": {"replication-method": "INCREMENTAL"}},
        capabilities=("catalog", "discover", "state", "about"),
        catalog_arg="--catalog",
        setting_kinds=TAP_JSONL_SETTINGS,
        sensitive=frozenset(),
        file=MAIN,
        line=62,
    )
    assert project.plugin("loader", "target-osds") == MeltanoPlugin(
        kind="loader",
        name="target-osds",
        executable="osds-target-postgres",
        pip_url=None,
        config={"sqlalchemy_url": "$PG_URL", "default_target_schema": "singer_dev"},
        select=(),
        metadata={},
        capabilities=(),
        catalog_arg="--catalog",
        setting_kinds={"sqlalchemy_url": "string", "default_target_schema": "string"},
        sensitive=frozenset({"sqlalchemy_url"}),
        file=LOADERS,
        line=4,
    )


def test_fixture_project_in_prod() -> None:
    project = load_project(FIXTURE / "meltano.yml", "prod")
    assert (project.environment, project.state_id_suffix) == ("prod", "${RUN_SUFFIX}")
    tap = project.plugin("extractor", "tap-jsonl")
    assert (tap.config, tap.select) == (
        {"path": "$PROD_DATA_DIR/*.jsonl", "stream_name": "events", "primary_keys": ["id"], "emit_state_every": 100000},
        ("events.*", "!events._sdc_path"),
    )
    # The child's own meltano.yml config beats its parent's environment override; the rest flows through.
    orders = project.plugin("extractor", "tap-jsonl-orders")
    assert (orders.config, orders.select) == (
        {"path": "${DATA_DIR}/orders/*.jsonl", "stream_name": "orders", "primary_keys": ["id"], "emit_state_every": 100000},
        ("orders.*",),
    )
    assert project.plugin("loader", "target-postgres") == MeltanoPlugin(
        kind="loader",
        name="target-postgres",
        executable="target-postgres",
        pip_url="meltanolabs-target-postgres==0.8.1",
        config={"sqlalchemy_url": "$PG_URL", "default_target_schema": "singer", "use_copy": "${USE_COPY}",
                "batch_size_rows": 100000},
        select=(),
        metadata={},
        capabilities=("about", "stream-maps", "activate-version", "hard-delete"),
        catalog_arg="--catalog",
        setting_kinds={"sqlalchemy_url": "password", "default_target_schema": "string", "use_copy": "boolean",
                       "batch_size_rows": "integer"},
        sensitive=frozenset({"sqlalchemy_url"}),
        file=LOADERS,
        line=14,
    )
    # Without the environment, the base definitions.
    assert load_project(FIXTURE).plugin("loader", "target-postgres").config == {
        "sqlalchemy_url": "$PG_URL", "default_target_schema": "meltano", "use_copy": "${USE_COPY}"}


def test_runtime_config_expands_references_and_casts_by_setting_kind() -> None:
    project = load_project(FIXTURE, "prod")
    env = project.env({"DATA_DIR": "/data", "PROD_DATA_DIR": "/prod", "EMIT_STATE_EVERY": "7", "PG_URL": "postgresql://x",
                       "USE_COPY": "Yes"})
    tap = project.plugin("extractor", "tap-jsonl")
    assert tap.runtime_config(env) == {"path": "/prod/*.jsonl", "stream_name": "events", "primary_keys": ["id"],
                                       "emit_state_every": 100000}
    assert load_project(FIXTURE).plugin("extractor", "tap-jsonl").runtime_config(env) == {
        "path": "/data/*.jsonl", "stream_name": "events_dev", "primary_keys": ["id"], "emit_state_every": 7}
    target = project.plugin("loader", "target-postgres")
    assert target.runtime_config(env) == {"sqlalchemy_url": "postgresql://x", "default_target_schema": "singer",
                                          "use_copy": True, "batch_size_rows": 100000}
    assert target.runtime_config({**env, "USE_COPY": "off"})["use_copy"] is False
    assert target.config["use_copy"] == "${USE_COPY}"  # the plugin itself is untouched
    assert error_of(tap.runtime_config, {}) == (
        f"{MAIN}:42: extractor `tap-jsonl`, setting `path`: environment variable $PROD_DATA_DIR is not set ({NOT_READ})")


def test_a_value_that_does_not_fit_its_kind(tmp_path: Path) -> None:
    write(tmp_path, """
        plugins:
          extractors:
            - name: tap-x
              executable: tap-x
              settings: [{name: every, kind: integer}, {name: token, kind: integer, sensitive: true},
                         {name: streams, kind: array}, {name: nested.flag, kind: boolean}]
              config: {every: $EVERY, token: $TOKEN, streams: '["a", "b"]', nested: {flag: "TRUE"}}
        """)
    tap = load_project(tmp_path).plugin("extractor", "tap-x")
    assert tap.sensitive == frozenset({"token"})
    assert tap.runtime_config({"EVERY": "5", "TOKEN": "9"}) == {"every": 5, "token": 9, "streams": ["a", "b"],
                                                                "nested": {"flag": True}}
    where = f"{tmp_path / 'meltano.yml'}:3: extractor `tap-x`"
    assert error_of(tap.runtime_config, {"EVERY": "often", "TOKEN": "9"}) == (
        f"{where}, setting `every`: 'often' is not an integer (the setting's kind)")
    assert error_of(tap.runtime_config, {"EVERY": "5", "TOKEN": "s3cret"}) == (
        f"{where}, setting `token`: its value (hidden: the setting is sensitive) is not an integer (the setting's kind)")


def test_plugin_repr_leaves_config_out() -> None:
    plugin = load_project(FIXTURE).plugin("loader", "target-osds")
    assert "$PG_URL" not in repr(plugin) and "osds-target-postgres" in repr(plugin)


def test_state_ids() -> None:
    dev = load_project(FIXTURE)
    assert dev.state_id("tap-jsonl", "target-osds") == "dev:tap-jsonl-to-target-osds"
    assert dev.state_id("tap-jsonl", "target-osds", "nightly") == "dev:tap-jsonl-to-target-osds:nightly"
    prod = load_project(FIXTURE, "prod")
    assert prod.state_id("tap-jsonl", "target-postgres", env={"RUN_SUFFIX": "r1"}) == "prod:tap-jsonl-to-target-postgres:r1"
    assert prod.state_id("tap-jsonl", "target-postgres", "given", env={}) == "prod:tap-jsonl-to-target-postgres:given"
    assert error_of(prod.state_id, "tap-jsonl", "target-postgres") == (
        f"{MAIN}:24: environment `prod`, setting `state_id_suffix`: environment variable $RUN_SUFFIX is not set ({NOT_READ})")
    assert error_of(dev.state_id, "tap-jsonl", "target-pg") == (
        f"{MAIN}: no loader `target-pg` in this Meltano project; did you mean `target-postgres`? "
        "(defined loaders: target-osds, target-postgres)")


def test_no_environment_means_no_meltano_state_id(tmp_path: Path) -> None:
    write(tmp_path, """
        plugins:
          extractors: [{name: tap-x, executable: tap-x}]
          loaders: [{name: target-y, executable: target-y}]
        """)
    project = load_project(tmp_path)
    assert (project.environment, project.environments, project.state_backend_uri) == (None, (), "systemdb")
    assert error_of(project.state_id, "tap-x", "target-y") == (
        f"{tmp_path / 'meltano.yml'}: no environment is active (none given, no default_environment), and without one "
        "`meltano run` keeps no state: there is no Meltano state id to derive; give an environment, or the state id itself")


def test_project_env_adds_meltanos_variables_without_overriding() -> None:
    assert load_project(FIXTURE).env({"A": "1", "MELTANO_ENVIRONMENT": "mine"}) == {
        "MELTANO_PROJECT_ROOT": str(FIXTURE), "MELTANO_SYS_DIR_ROOT": str(FIXTURE / ".meltano"),
        "MELTANO_ENVIRONMENT": "mine", "A": "1"}
    project = load_project(FIXTURE)
    uri = expand_env(project.state_backend_uri, project.env({}))
    assert uri == f"file://{FIXTURE}/.meltano/state"


# --- resolution rules ---------------------------------------------------------------------------


def test_inherit_from_deep_merges_config_and_replaces_the_rest(tmp_path: Path) -> None:
    write(tmp_path, """
        default_environment: test
        environments:
          - name: test
            config:
              plugins:
                extractors:
                  - name: base
                    config: {conn: {port: 6543}}
                    metadata: {orders: {key: id}}
                  - name: child
                    config: {conn: {user: env-user}}
                    select: [orders.id]
        plugins:
          extractors:
            - name: base
              namespace: tap_base
              pip_url: tap-base==1.0
              capabilities: [properties, discover]
              settings: [{name: conn, kind: object}]
              config: {conn: {host: h, port: 5432, opts: [a]}, schema: s}
              select: [orders.*]
              metadata: {orders: {replication-method: FULL_TABLE}}
            - name: child
              inherit_from: base
              capabilities: [properties, catalog]
              settings: [{name: conn, kind: object, sensitive: true}]
              config: {conn: {opts: [b], user: u}}
              metadata: {orders: {replication-key: updated_at}}
            - name: grandchild
              inherit_from: child
              executable: tap-gc
              pip_url: null
        """)
    project = load_project(tmp_path)
    main = str(tmp_path / "meltano.yml")
    assert project.plugin("extractor", "base") == MeltanoPlugin(
        kind="extractor", name="base", executable="base", pip_url="tap-base==1.0",
        config={"conn": {"host": "h", "port": 6543, "opts": ["a"]}, "schema": "s"},
        select=("orders.*",), metadata={"orders": {"replication-method": "FULL_TABLE", "key": "id"}},
        capabilities=("properties", "discover"), catalog_arg="--properties",
        setting_kinds={"conn": "object"}, sensitive=frozenset(), file=main, line=15)
    assert project.plugin("extractor", "child") == MeltanoPlugin(
        kind="extractor", name="child", executable="base", pip_url="tap-base==1.0",
        config={"conn": {"host": "h", "port": 6543, "opts": ["b"], "user": "env-user"}, "schema": "s"},
        select=("orders.id",),
        metadata={"orders": {"replication-method": "FULL_TABLE", "key": "id", "replication-key": "updated_at"}},
        capabilities=("properties", "catalog"), catalog_arg="--catalog",
        setting_kinds={"conn": "object"}, sensitive=frozenset({"conn"}), file=main, line=23)
    grandchild = project.plugin("extractor", "grandchild")
    assert (grandchild.executable, grandchild.pip_url, grandchild.select, grandchild.config) == (
        "tap-gc", None, ("orders.id",), {"conn": {"host": "h", "port": 6543, "opts": ["b"], "user": "env-user"}, "schema": "s"})


@pytest.mark.parametrize(
    ("capabilities", "catalog_arg"),
    [("[properties]", "--properties"), ("[properties, catalog]", "--catalog"), ("[catalog]", "--catalog"), ("[]", "--catalog")],
)
def test_catalog_arg_follows_capabilities(tmp_path: Path, capabilities: str, catalog_arg: str) -> None:
    write(tmp_path, f"""
        plugins:
          extractors:
            - name: tap-x
              executable: tap-x
              capabilities: {capabilities}
        """)
    assert load_project(tmp_path).plugin("extractor", "tap-x").catalog_arg == catalog_arg


def test_include_paths_add_plugins_and_environments_once(tmp_path: Path) -> None:
    write(tmp_path, """
        include_paths: ["*.yml", "extra/*.yml", "extra/../extra/b.yml"]
        state_backend.uri: file:///tmp/state
        plugins:
          extractors: [{name: tap-a, executable: tap-a}]
        """)
    write(tmp_path, "plugins: {loaders: [{name: target-b, pip_url: target-b}]}\n", "extra/b.yml")
    write(tmp_path, "environments: [{name: from-include}]\n", "extra/a.yml")
    write(tmp_path, "", "extra/empty.yml")
    project = load_project(tmp_path / "meltano.yml", "from-include")
    assert project.files == (tmp_path / "meltano.yml", tmp_path / "extra/a.yml", tmp_path / "extra/b.yml",
                             tmp_path / "extra/empty.yml")
    assert (project.names("extractor"), project.names("loader"), project.environments) == (
        ("tap-a",), ("target-b",), ("from-include",))
    assert project.state_backend_uri == "file:///tmp/state"
    assert project.plugin("loader", "target-b").executable == "target-b"


# --- errors ---------------------------------------------------------------------------------------


def test_unknown_plugins_are_named_with_a_suggestion() -> None:
    project = load_project(FIXTURE)
    assert error_of(project.plugin, "extractor", "tap-jsnl") == (
        f"{MAIN}: no extractor `tap-jsnl` in this Meltano project; did you mean `tap-jsonl`? "
        "(defined extractors: tap-jsonl, tap-jsonl-orders)")
    assert error_of(project.plugin, "loader", "zzz") == (
        f"{MAIN}: no loader `zzz` in this Meltano project (defined loaders: target-osds, target-postgres)")
    assert error_of(project.plugin, "mapper", "m") == "unknown plugin kind 'mapper': give 'extractor' or 'loader'"


def test_no_plugins_of_a_kind(tmp_path: Path) -> None:
    write(tmp_path, "plugins: {extractors: [{name: tap-x, executable: tap-x}]}\n")
    assert error_of(load_project(tmp_path).plugin, "loader", "target-y") == (
        f"{tmp_path / 'meltano.yml'}: no loader `target-y` in this Meltano project (defined loaders: none)")


def test_a_hub_plugin_is_refused_only_when_used(tmp_path: Path) -> None:
    write(tmp_path, """
        plugins:
          extractors:
            - name: tap-ok
              pip_url: tap-ok
            - name: tap-github
              variant: meltanolabs
            - name: tap-child
              inherit_from: tap-github
        """)
    project = load_project(tmp_path)
    assert project.plugin("extractor", "tap-ok").executable == "tap-ok"
    message = (f"{tmp_path / 'meltano.yml'}:5: extractor `tap-github` has no pip_url, executable, namespace or inherit_from: "
               f"it refers to {HUB}; give its pip_url and executable in meltano.yml (a custom plugin definition)")
    assert error_of(project.plugin, "extractor", "tap-github") == message
    assert error_of(project.plugin, "extractor", "tap-child") == message


def test_inherit_from_an_undefined_plugin_or_in_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, """
        plugins:
          extractors:
            - name: tap-a
              inherit_from: tap-postgress
            - name: tap-postgres
              executable: tap-postgres
            - name: tap-b
              inherit_from: tap-c
            - name: tap-c
              inherit_from: tap-b
            - name: tap-self
              inherit_from: tap-self
        """)
    project = load_project(tmp_path)
    main = tmp_path / "meltano.yml"
    assert error_of(project.plugin, "extractor", "tap-a") == (
        f"{main}:4: extractor `tap-a` inherits from `tap-postgress`, which this project does not define; did you mean "
        "`tap-postgres`? (defined extractors: tap-b, tap-c, tap-postgres, tap-self). Meltano would look `tap-postgress` "
        f"up on {HUB}: define it in meltano.yml with its pip_url and executable")
    assert error_of(project.plugin, "extractor", "tap-b") == (
        f"{main}:10: extractor `tap-c`: `inherit_from` makes a cycle: tap-b → tap-c → tap-b")
    assert error_of(project.plugin, "extractor", "tap-self") == (
        f"{main}:12: extractor `tap-self`: `inherit_from` makes a cycle: tap-self → tap-self")


def test_unknown_environments(tmp_path: Path) -> None:
    assert error_of(load_project, FIXTURE, "prd") == (
        f"{MAIN}: no environment `prd` in this Meltano project; did you mean `prod`? (defined environments: dev, prod)")
    write(tmp_path, """
        plugins: {}
        default_environment: staging
        environments: [{name: dev}]
        """)
    assert error_of(load_project, tmp_path) == (
        f"{tmp_path / 'meltano.yml'}:2: default_environment names no environment `staging` in this Meltano project "
        "(defined environments: dev)")
    assert load_project(tmp_path, "dev").environment == "dev"  # the argument wins over default_environment


def test_yaml_syntax_errors_and_duplicate_keys(tmp_path: Path) -> None:
    write(tmp_path, """
        plugins:
          extractors:
            - name: tap-x
              config: {a: [1, 2}
        """)
    assert error_of(load_project, tmp_path) == (
        f"{tmp_path / 'meltano.yml'}:4:24: YAML syntax error: did not find expected ',' or ']'")
    write(tmp_path, """
        plugins:
          extractors:
            - name: tap-x
              executable: a
              executable: b
        """)
    assert error_of(load_project, tmp_path) == f"{tmp_path / 'meltano.yml'}:5:7: duplicate key `executable` (first on line 4)"
    write(tmp_path, "- a list\n")
    assert error_of(load_project, tmp_path) == (
        f"{tmp_path / 'meltano.yml'}:1: the file must hold a mapping (plugins:, environments:, ...), not a list")


def test_no_project_file(tmp_path: Path) -> None:
    assert error_of(load_project, tmp_path) == (
        f"{tmp_path / 'meltano.yml'}: no such file: a Meltano project is a directory holding meltano.yml")


def test_a_plugin_or_environment_defined_twice(tmp_path: Path) -> None:
    write(tmp_path, """
        include_paths: [extra.yml]
        plugins:
          loaders:
            - name: target-x
              executable: target-x
        environments:
          - name: dev
        """)
    write(tmp_path, """
        plugins:
          extractors:
            - name: target-x
              executable: target-x
          loaders:
            - name: target-x
              executable: other
        """, "extra.yml")
    assert error_of(load_project, tmp_path) == (
        f"{tmp_path / 'extra.yml'}:6: loader `target-x` is defined twice (first at {tmp_path / 'meltano.yml'}:4)")
    write(tmp_path, "environments: [{name: qa}, {name: dev}]\n", "extra.yml")
    assert error_of(load_project, tmp_path) == (
        f"{tmp_path / 'extra.yml'}:1: environment `dev` is defined twice (first at {tmp_path / 'meltano.yml'}:7)")


def test_an_environment_configuring_an_undefined_plugin(tmp_path: Path) -> None:
    write(tmp_path, """
        plugins:
          extractors: [{name: tap-jsonl, executable: tap-jsonl}]
        environments:
          - name: dev
            config:
              plugins:
                extractors:
                  - name: tap-json
                    config: {a: 1}
        """)
    assert load_project(tmp_path).plugin("extractor", "tap-jsonl").config == {}  # dev is not active
    assert error_of(load_project, tmp_path, "dev") == (
        f"{tmp_path / 'meltano.yml'}:8: environment `dev` configures extractor `tap-json`, which this project does not "
        "define; did you mean `tap-jsonl`? (defined extractors: tap-jsonl)")


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        ("{name: tap-x, executable: tap-x, config: [a]}", "3: extractor `tap-x`: `config` must be a mapping, not a list"),
        ("{name: tap-x, executable: tap-x, select: [a, 1]}", "3: extractor `tap-x`: `select` must be a list of strings; "
                                                             "1 is an integer"),
        ("{name: tap-x, executable: [tap-x]}", "3: extractor `tap-x`: `executable` must be a string, not a list"),
        ("{name: tap-x, executable: x, settings: [a]}", "3: extractor `tap-x`: each of `settings` must be a mapping "
                                                        "with a `name`"),
    ],
)
def test_misshapen_plugins(tmp_path: Path, plugin: str, message: str) -> None:
    write(tmp_path, f"""
        plugins:
          extractors:
            - {plugin}
        """)
    assert error_of(load_project(tmp_path).plugin, "extractor", "tap-x") == f"{tmp_path / 'meltano.yml'}:{message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugins: [a]\n", "1: `plugins` must be a mapping (extractors:, loaders:), not a list"),
        ("plugins: {extractors: {name: x}}\n", "1: `plugins.extractors` must be a list, not a mapping"),
        ("plugins:\n  extractors:\n    - executable: x\n", "3: each of `plugins.extractors` must be a mapping with a `name`"),
        ("environments: {dev: {}}\n", "1: `environments` must be a list, not a mapping"),
        ("default_environment: [dev]\n", "1: `default_environment` must be a string, not a list"),
        ("include_paths: [/etc/*.yml]\n", "1: include_paths pattern `/etc/*.yml` must be relative to the project directory"),
        ("state_backend: file:///x\n", "1: `state_backend` must be a mapping (uri: ...), not a string"),
    ],
)
def test_misshapen_projects(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, text)
    assert error_of(load_project, tmp_path) == f"{tmp_path / 'meltano.yml'}:{message}"


def test_misshapen_environment_overrides(tmp_path: Path) -> None:
    write(tmp_path, """
        plugins:
          extractors: [{name: tap-x, executable: tap-x}]
        environments:
          - name: dev
            config:
              plugins:
                extractors: [{name: tap-x, select: orders.*}]
        """)
    assert error_of(load_project(tmp_path, "dev").plugin, "extractor", "tap-x") == (
        f"{tmp_path / 'meltano.yml'}:7: environment `dev`, extractor `tap-x`: `select` must be a list of strings, not a string")


def test_an_include_pattern_matching_a_directory(tmp_path: Path) -> None:
    write(tmp_path, "include_paths:\n  - sub*\n")
    (tmp_path / "subdir").mkdir()
    assert error_of(load_project, tmp_path) == (
        f"{tmp_path / 'meltano.yml'}:2: include_paths pattern `sub*` matches {tmp_path / 'subdir'}, which is not a file")


def test_errors_survive_pickling() -> None:
    err = MeltanoError("bad", "/p/meltano.yml", 3, 4)
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), str(copy), copy.path, copy.line, copy.column) == (MeltanoError, "/p/meltano.yml:3:4: bad",
                                                                         "/p/meltano.yml", 3, 4)


# --- expand_env -----------------------------------------------------------------------------------


def test_expand_env_follows_meltanos_syntax() -> None:
    value = {"a": "$HOST:${PORT}/x", "b": ["${lower_ok}", 5, None, {"c": "$lower stays"}], "d": r"\$HOST and \${PORT}",
             "e": True, "f": "$$HOST", "g": "costs $5"}
    env = {"HOST": "h", "PORT": "5432", "lower_ok": "L"}
    assert expand_env(value, env) == {"a": "h:5432/x", "b": ["L", 5, None, {"c": "$lower stays"}],
                                      "d": "$HOST and ${PORT}", "e": True, "f": "$h", "g": "costs $5"}
    assert value["a"] == "$HOST:${PORT}/x"
    assert expand_env("${EMPTY}x", {"EMPTY": ""}) == "x"
    assert expand_env(3, {}) == 3


def test_expand_env_names_the_variable_and_the_setting() -> None:
    assert error_of(expand_env, {"conn": {"hosts": ["ok", "${DB_HOST}"]}}, {}) == (
        f"setting `conn.hosts[1]`: environment variable $DB_HOST is not set ({NOT_READ})")
    assert error_of(expand_env, "$X", {}, owner="loader `t`", file="/m.yml", line=9, setting="uri") == (
        f"/m.yml:9: loader `t`, setting `uri`: environment variable $X is not set ({NOT_READ})")
    assert error_of(expand_env, "$X", {}) == f"a value: environment variable $X is not set ({NOT_READ})"


# --- the file:// state backend --------------------------------------------------------------------


def write_state(root: Path, state_id: str, document: object) -> None:
    (root / state_id).mkdir(parents=True)
    (root / state_id / "state.json").write_text(json.dumps(document))


def test_file_state_merges_partial_over_completed(tmp_path: Path) -> None:
    write_state(tmp_path, "prod:tap-jsonl-to-target-postgres", {
        "completed": {"singer_state": {"bookmarks": {"a": {"key": 1, "keep": True}, "b": {"key": 1}}, "list": [1, 2]}},
        "partial": {"singer_state": {"bookmarks": {"a": {"key": 2}, "c": {"key": 3}}, "list": [9]}},
    })
    assert read_file_state(f"file://{tmp_path}", "prod:tap-jsonl-to-target-postgres") == {
        "bookmarks": {"a": {"key": 2, "keep": True}, "b": {"key": 1}, "c": {"key": 3}}, "list": [9]}


def test_file_state_completed_only_partial_only_or_none(tmp_path: Path) -> None:
    write_state(tmp_path, "dev:a-to-b", {"completed": {"singer_state": {"bookmarks": {"s": 1}}}, "partial": {}})
    write_state(tmp_path, "dev:p-to-q", {"completed": {}, "partial": {"singer_state": {"bookmarks": {"s": 2}}}})
    write_state(tmp_path, "dev:e-to-f", {"completed": {}, "partial": {}})
    uri = f"file://{tmp_path}/"
    assert [read_file_state(uri, sid) for sid in ("dev:a-to-b", "dev:p-to-q", "dev:e-to-f", "dev:none-to-b")] == [
        {"bookmarks": {"s": 1}}, {"bookmarks": {"s": 2}}, None, None]
    assert read_file_state(f"file://localhost{tmp_path}", "dev:a-to-b") == {"bookmarks": {"s": 1}}


def test_file_state_refusals(tmp_path: Path) -> None:
    hint = "export it with `meltano state get dev:a-to-b` and load it with `osds singer state set dev:a-to-b @file.json`"
    assert error_of(read_file_state, "systemdb", "dev:a-to-b") == (
        f"state backend `systemdb`: only file:// Meltano state can be imported; {hint}")
    assert error_of(read_file_state, "s3://bucket/prefix", "dev:a-to-b") == (
        f"state backend `s3://`: only file:// Meltano state can be imported; {hint}")
    assert error_of(read_file_state, "file://./state", "x") == (
        "state backend `file://./state`: give an absolute directory, file:///path/to/state")
    for bad in ("..", ".", "", "a/b", "../x"):
        assert error_of(read_file_state, f"file://{tmp_path}", bad) == (
            f"state id {bad!r} cannot name a directory of the file:// state backend")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "state.json").write_text("{not json")
    assert error_of(read_file_state, f"file://{tmp_path}", "x") == (
        f"{tmp_path / 'x' / 'state.json'}: Meltano state is not JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)")
    (tmp_path / "x" / "state.json").write_text('{"completed": ["no"]}')
    assert error_of(read_file_state, f"file://{tmp_path}", "x") == (
        f'{tmp_path / "x" / "state.json"}: Meltano state: `completed` must be an object such as {{"singer_state": {{...}}}}')


def test_fixture_state_backend_round_trip(tmp_path: Path) -> None:
    project = load_project(FIXTURE)
    uri = expand_env(project.state_backend_uri, {**project.env({}), "MELTANO_PROJECT_ROOT": str(tmp_path)})
    sid = project.state_id("tap-jsonl", "target-osds")
    write_state(tmp_path / ".meltano" / "state", sid, {"completed": {"singer_state": {"bookmarks": {"events": {"v": 1}}}}})
    assert read_file_state(uri, sid) == {"bookmarks": {"events": {"v": 1}}}
