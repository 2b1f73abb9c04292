"""Meltano projects read without Meltano: a ``meltano.yml``'s extractors and loaders, resolved as Meltano
resolves them, and the state Meltano's ``file://`` state backend keeps (no Airflow imports; PyYAML is
imported when a project is loaded).

What is followed, after Meltano 4.x:

* ``include_paths`` (globs relative to the project directory) add their files' ``plugins`` and
  ``environments``; a plugin or environment defined twice is an error naming both places.
* ``inherit_from`` takes everything from the named plugin of the same kind (its environment overrides
  included) and overrides what it sets itself; ``config`` and ``metadata`` merge at depth, the rest
  (``pip_url``, ``executable``, ``capabilities``, ``select``) is replaced. ``settings`` merge by name.
* The active environment (the argument, else ``default_environment``, else none) merges its
  per-plugin ``config`` and ``metadata`` over the plugin's and replaces its ``select``.
* ``$VAR`` and ``${VAR}`` in values stay as written: :func:`expand_env` (or
  :meth:`MeltanoPlugin.runtime_config`) expands them when the plugin runs. Like Meltano, ``$VAR``
  must start with an upper-case letter and ``\\$VAR`` is the literal text ``$VAR``.

Not read: Meltano Hub (a plugin without ``pip_url``, ``executable``, ``namespace`` or ``inherit_from``
refers to it, and is an error here), ``env:`` blocks, ``.env`` files, ``MELTANO_*`` setting variables,
mappers and utilities.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from airflow_osds.exceptions import OsdsError

__all__ = ["MeltanoError", "MeltanoPlugin", "MeltanoProject", "expand_env", "load_project", "read_file_state"]

Kind = Literal["extractor", "loader"]
_SECTIONS: dict[str, str] = {"extractor": "extractors", "loader": "loaders"}
_SENSITIVE_KINDS = frozenset({"password", "oauth"})
_TRUTHY = ("true", "1", "yes", "on")  # Meltano's boolean casting
_ENV_REF = re.compile(r"(?P<escape>\\)?\$(?:\{(?P<curly>\w+)\}|(?P<bare>[A-Z][A-Z0-9_]*))")
_NOT_READ = "meltano.yml `env:` blocks and .env files are not read: set it in the task's environment"


class MeltanoError(OsdsError):
    """A Meltano project or state cannot be used; ``path`` (and ``line``, ``column`` when known) say where."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        where = "".join([path or "", f":{line}" if path and line else "", f":{column}" if path and line and column else ""])
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.path, self.line, self.column))


@dataclass(frozen=True)
class MeltanoPlugin:
    """An extractor or loader with its inheritance and the active environment applied.

    ``config`` holds values as written (``$VAR`` references unexpanded): use :meth:`runtime_config`.
    ``file`` and ``line`` are where the plugin is defined.
    """

    kind: Kind
    name: str
    executable: str
    pip_url: str | None
    config: dict[str, Any] = field(hash=False, repr=False)  # may hold secrets: not in repr()
    select: tuple[str, ...]
    metadata: dict[str, Any] = field(hash=False)
    capabilities: tuple[str, ...]
    catalog_arg: Literal["--catalog", "--properties"]
    setting_kinds: dict[str, str] = field(default_factory=dict, hash=False)
    sensitive: frozenset[str] = frozenset()
    file: str = ""
    line: int | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} `{self.name}`"

    def runtime_config(self, env: Mapping[str, str]) -> dict[str, Any]:
        """``config`` with ``$VAR`` references expanded from ``env`` and string values of typed settings
        cast as Meltano casts them (``integer``, ``boolean``, ``array`` and ``object`` kinds).

        :raises MeltanoError: a referenced variable is not in ``env``, or a value does not fit its kind.
        """
        config = expand_env(self.config, env, owner=self.label, file=self.file, line=self.line)
        for name, kind in self.setting_kinds.items():
            parent, key = _dotted(config, name)
            if parent is not None and isinstance(parent[key], str):
                parent[key] = self._cast(name, kind, parent[key])
        return config

    def _cast(self, name: str, kind: str, value: str) -> Any:
        try:
            if kind == "boolean":
                return value.lower() in _TRUTHY
            if kind == "integer":
                return int(value)
            if kind in ("array", "object"):
                parsed = json.loads(value)
                if isinstance(parsed, list if kind == "array" else dict):
                    return parsed
                raise ValueError
        except ValueError:
            shown = "its value (hidden: the setting is sensitive)" if name in self.sensitive else repr(value)
            article = "an" if kind[0] in "aeiou" else "a"
            raise MeltanoError(
                f"{self.label}, setting `{name}`: {shown} is not {article} {kind} (the setting's kind)",
                self.file, self.line,
            ) from None
        return value


def _dotted(config: dict[str, Any], name: str) -> tuple[dict[str, Any] | None, str]:
    """The mapping holding setting ``name`` (a dotted name walks nested mappings) and its key there."""
    if name in config:
        return config, name
    *parents, key = name.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node, key) if isinstance(node, dict) and key in node else (None, key)


def expand_env(
    value: Any, env: Mapping[str, str], *, owner: str = "", file: str | None = None, line: int | None = None, setting: str = ""
) -> Any:
    """``value`` with Meltano's ``$VAR``/``${VAR}`` references replaced from ``env``, recursively
    through mappings and lists; ``\\$VAR`` gives the literal ``$VAR``. Nothing is modified in place.

    ``owner`` (e.g. "extractor `tap-jsonl`"), ``file`` and ``line`` place the error; ``setting`` names
    ``value`` itself when it is not a mapping of settings.

    :raises MeltanoError: a referenced variable is not in ``env``; it names the variable and the setting.
    """
    return _expand(value, env, setting, (owner, file, line))


def _expand(value: Any, env: Mapping[str, str], setting: str, where: tuple[str, str | None, int | None]) -> Any:
    if isinstance(value, str):
        if "$" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            var = match["curly"] or match["bare"]
            if match["escape"]:
                return match[0][1:]
            if var not in env:
                owner, file, line = where
                prefix = f"{owner}, " if owner else ""
                named = f"setting `{setting}`" if setting else "a value"
                raise MeltanoError(f"{prefix}{named}: environment variable ${var} is not set ({_NOT_READ})", file, line)
            return str(env[var])

        return _ENV_REF.sub(replace, value)
    if isinstance(value, Mapping):
        return {k: _expand(v, env, f"{setting}.{k}" if setting else str(k), where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{setting}[{i}]", where) for i, v in enumerate(value)]
    return value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``over`` merged in: mappings merge at depth, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --- reading YAML with the position of every mapping and list ------------------------------------


class _Duplicate(Exception):
    def __init__(self, key: Any, first: Any) -> None:
        self.key = key
        self.first = first


@cache
def _loader() -> type:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    merge_tag = "tag:yaml.org,2002:merge"

    class Loader(base):  # type: ignore[misc, valid-type]
        """The (C) safe loader, remembering where each mapping and list and each mapping key starts,
        and refusing duplicate keys (Meltano's YAML library refuses them too)."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.marks: dict[int, Any] = {}
            self.key_marks: dict[int, dict[str, Any]] = {}

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            obj = super().construct_object(node, deep)
            if isinstance(obj, (dict, list)) and id(obj) not in self.marks:
                self.marks[id(obj)] = node.start_mark
                if isinstance(node, yaml.MappingNode):
                    keys: dict[str, Any] = {}
                    for key_node, _ in node.value:
                        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != merge_tag:
                            if key_node.value in keys:
                                raise _Duplicate(key_node, keys[key_node.value])
                            keys[key_node.value] = key_node.start_mark
                    self.key_marks[id(obj)] = keys
            return obj

    return Loader


class _Doc:
    """One YAML file's data, and the line of its mappings, lists and keys."""

    def __init__(self, path: Path) -> None:
        import yaml

        self.path = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise MeltanoError(f"cannot read the file: {exc.strerror}", self.path) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise MeltanoError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", self.path, line) from None
        loader = _loader()(text)
        try:
            self.data: Any = loader.get_single_data()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
            raise MeltanoError(f"YAML syntax error: {exc.problem or exc.context}", self.path, line, column) from None
        except _Duplicate as dup:
            mark = dup.key.start_mark
            raise MeltanoError(
                f"duplicate key `{dup.key.value}` (first on line {dup.first.line + 1})", self.path, mark.line + 1, mark.column + 1
            ) from None
        finally:
            loader.dispose()
        self._marks = loader.marks
        self._key_marks = loader.key_marks
        if self.data is None:
            self.data = {}
        if not isinstance(self.data, dict):
            raise MeltanoError(f"the file must hold a mapping (plugins:, environments:, ...), not {_type(self.data)}", self.path, 1)

    def line(self, obj: Any, key: str | None = None) -> int | None:
        """1-based line of ``obj``'s ``key`` (when given and known), else of ``obj``."""
        if key is not None:
            mark = self._key_marks.get(id(obj), {}).get(key)
            if mark is not None:
                return int(mark.line) + 1
        mark = self._marks.get(id(obj))
        return int(mark.line) + 1 if mark is not None else None

    def error(self, message: str, obj: Any, key: str | None = None) -> MeltanoError:
        return MeltanoError(message, self.path, self.line(obj, key))

    def where(self, obj: Any) -> str:
        line = self.line(obj)
        return f"{self.path}:{line}" if line else self.path


def _type(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number",
     type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _suggest(name: str, names: Iterable[str], what: str) -> str:
    """``; did you mean `x`? (defined <what>: a, b)`` for an unknown name, the hint only when one is close."""
    import difflib

    names = sorted(names)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"{hint} (defined {what}: {', '.join(names) or 'none'})"


@dataclass
class _Entry:
    """A plugin definition, or an environment's override of one, where it was written."""

    data: dict[str, Any]
    doc: _Doc
    name: str
    label: str  # how messages name it, e.g. "extractor `tap-jsonl`"

    def get(self, key: str, kind: type | tuple[type, ...], expected: str) -> Any:
        value = self.data.get(key)
        if value is not None and not isinstance(value, kind):
            raise self.doc.error(f"{self.label}: `{key}` must be {expected}, not {_type(value)}", self.data, key)
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self.get(key, list, "a list of strings")
        if value is None:
            return None
        for item in value:
            if not isinstance(item, str):
                raise self.doc.error(f"{self.label}: `{key}` must be a list of strings; {item!r} is {_type(item)}", value)
        return tuple(value)

    def mapping(self, key: str) -> dict[str, Any]:
        return self.get(key, dict, "a mapping") or {}

    def settings(self) -> list[tuple[str, str, bool]]:
        """(name, kind, sensitive) of each entry of ``settings``."""
        found = []
        settings = self.get("settings", list, "a list of settings") or []
        for setting in settings:
            if not isinstance(setting, dict) or not isinstance(setting.get("name"), str):
                raise self.doc.error(f"{self.label}: each of `settings` must be a mapping with a `name`",
                                     setting if isinstance(setting, (dict, list)) else settings)
            kind = setting.get("kind") or "string"
            if not isinstance(kind, str):
                raise self.doc.error(f"{self.label}: setting `{setting['name']}`: `kind` must be a string", setting, "kind")
            found.append((setting["name"], kind, setting.get("sensitive") is True or kind in _SENSITIVE_KINDS))
        return found


@dataclass(frozen=True)
class _Resolved:
    executable: str
    pip_url: str | None
    config: dict[str, Any]
    select: tuple[str, ...]
    metadata: dict[str, Any]
    capabilities: tuple[str, ...]
    settings: dict[str, tuple[str, bool]]


class MeltanoProject:
    """A loaded ``meltano.yml`` (see :func:`load_project`)."""

    def __init__(
        self,
        path: Path,
        files: tuple[Path, ...],
        environment: str | None,
        environments: tuple[str, ...],
        state_backend_uri: str,
        state_id_suffix: str | None,
        state_id_suffix_at: tuple[str | None, int | None],
        plugins: dict[tuple[str, str], _Entry],
        overrides: dict[tuple[str, str], _Entry],
    ) -> None:
        self.path = path
        self.root = path.parent
        self.files = files
        self.environment = environment
        self.environments = environments
        self.state_backend_uri = state_backend_uri
        self.state_id_suffix = state_id_suffix
        self._suffix_at = state_id_suffix_at
        self._plugins = plugins
        self._overrides = overrides

    def __repr__(self) -> str:
        return f"MeltanoProject({str(self.path)!r}, environment={self.environment!r})"

    def names(self, kind: Kind) -> tuple[str, ...]:
        """The names of the project's plugins of ``kind``, in the order they are defined."""
        _check_kind(kind)
        return _names(self._plugins, kind)

    def _missing(self, kind: str, name: str) -> MeltanoError:
        return MeltanoError(
            f"no {kind} `{name}` in this Meltano project{_suggest(name, _names(self._plugins, kind), _SECTIONS[kind])}",
            str(self.path),
        )

    def plugin(self, kind: Kind, name: str) -> MeltanoPlugin:
        """The extractor or loader ``name``, resolved.

        :raises MeltanoError: no such plugin (with a did-you-mean), a Meltano Hub plugin, a broken
            ``inherit_from``, or a value of the wrong type.
        """
        _check_kind(kind)
        if (kind, name) not in self._plugins:
            raise self._missing(kind, name)
        entry = self._plugins[kind, name]
        resolved = self._resolve(kind, name, ())
        capabilities = resolved.capabilities
        return MeltanoPlugin(
            kind=kind,
            name=name,
            executable=resolved.executable,
            pip_url=resolved.pip_url,
            config=resolved.config,
            select=resolved.select,
            metadata=resolved.metadata,
            capabilities=capabilities,
            catalog_arg="--properties" if "properties" in capabilities and "catalog" not in capabilities else "--catalog",
            setting_kinds={n: k for n, (k, _) in resolved.settings.items()},
            sensitive=frozenset(n for n, (_, secret) in resolved.settings.items() if secret),
            file=entry.doc.path,
            line=entry.doc.line(entry.data),
        )

    def _resolve(self, kind: str, name: str, chain: tuple[str, ...]) -> _Resolved:
        entry = self._plugins[kind, name]
        parent = entry.get("inherit_from", str, "a plugin name")
        if parent is not None:
            if parent in chain or parent == name:
                cycle = " → ".join((*chain[chain.index(parent):], name, parent) if parent in chain else (name, parent))
                raise entry.doc.error(f"{entry.label}: `inherit_from` makes a cycle: {cycle}", entry.data, "inherit_from")
            if (kind, parent) not in self._plugins:
                others = [n for n in _names(self._plugins, kind) if n != name]
                raise entry.doc.error(
                    f"{entry.label} inherits from `{parent}`, which this project does not define"
                    f"{_suggest(parent, others, _SECTIONS[kind])}. Meltano would look `{parent}` up on Meltano Hub, which "
                    f"is not reachable by us: define it in meltano.yml with its pip_url and executable",
                    entry.data, "inherit_from",
                )
            base = self._resolve(kind, parent, (*chain, name))
        else:
            if not any(entry.data.get(key) for key in ("pip_url", "executable", "namespace")):
                raise entry.doc.error(
                    f"{entry.label} has no pip_url, executable, namespace or inherit_from: it refers to Meltano Hub, which "
                    "is not reachable by us; give its pip_url and executable in meltano.yml (a custom plugin definition)",
                    entry.data,
                )
            base = _Resolved(name, None, {}, (), {}, (), {})
        executable = entry.get("executable", str, "a string")
        pip_url = entry.get("pip_url", str, "a string")
        select = entry.strings("select")
        capabilities = entry.strings("capabilities")
        settings = dict(base.settings)
        settings.update((n, (k, s)) for n, k, s in entry.settings())
        resolved = _Resolved(
            executable=executable or base.executable,
            pip_url=(pip_url or None) if "pip_url" in entry.data else base.pip_url,
            config=_merge(base.config, entry.mapping("config")),
            select=base.select if select is None else select,
            metadata=_merge(base.metadata, entry.mapping("metadata")),
            capabilities=base.capabilities if capabilities is None else capabilities,
            settings=settings,
        )
        override = self._overrides.get((kind, name))
        if override is None:
            return resolved
        select = override.strings("select")
        return _Resolved(
            executable=resolved.executable,
            pip_url=resolved.pip_url,
            config=_merge(resolved.config, override.mapping("config")),
            select=resolved.select if select is None else select,
            metadata=_merge(resolved.metadata, override.mapping("metadata")),
            capabilities=resolved.capabilities,
            settings=resolved.settings,
        )

    def state_id(self, extractor: str, loader: str, suffix: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
        """Meltano's state id of ``meltano run <extractor> <loader>``: ``<environment>:<extractor>-to-<loader>``,
        then ``:<suffix>`` (the argument, else the environment's ``state_id_suffix`` expanded from ``env``).

        :raises MeltanoError: no environment is active (``meltano run`` then keeps no state), or a plugin
            is not defined.
        """
        for kind, name in (("extractor", extractor), ("loader", loader)):
            if (kind, name) not in self._plugins:
                raise self._missing(kind, name)
        if self.environment is None:
            raise MeltanoError(
                "no environment is active (none given, no default_environment), and without one `meltano run` keeps no "
                "state: there is no Meltano state id to derive; give an environment, or the state id itself",
                str(self.path),
            )
        if suffix is None and self.state_id_suffix is not None:
            file, line = self._suffix_at
            suffix = expand_env(self.state_id_suffix, env or {}, owner=f"environment `{self.environment}`",
                                file=file, line=line, setting="state_id_suffix")
        sid = f"{self.environment}:{extractor}-to-{loader}"
        return f"{sid}:{suffix}" if suffix else sid

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` plus the variables Meltano gives every expansion when ``base`` lacks them:
        ``MELTANO_PROJECT_ROOT``, ``MELTANO_SYS_DIR_ROOT`` and ``MELTANO_ENVIRONMENT`` (empty when none)."""
        return {
            "MELTANO_PROJECT_ROOT": str(self.root),
            "MELTANO_SYS_DIR_ROOT": str(self.root / ".meltano"),
            "MELTANO_ENVIRONMENT": self.environment or "",
            **base,
        }


def _names(plugins: Mapping[tuple[str, str], _Entry], kind: str) -> tuple[str, ...]:
    return tuple(name for k, name in plugins if k == kind)


def _check_kind(kind: str) -> None:
    if kind not in _SECTIONS:
        raise MeltanoError(f"unknown plugin kind {kind!r}: give 'extractor' or 'loader'")


def load_project(path: Path, environment: str | None = None) -> MeltanoProject:
    """Read the Meltano project at ``path`` (its ``meltano.yml``, or the directory holding it) and the
    files its ``include_paths`` name, with ``environment`` (else ``default_environment``, else none) active.

    Plugins are resolved by :meth:`MeltanoProject.plugin`, so a project whose unused plugins refer to
    Meltano Hub still loads.

    :raises MeltanoError: unreadable or invalid YAML, a misshapen project, a duplicate plugin or
        environment, an unknown environment; located by file and line.
    """
    path = Path(path).absolute()
    if path.is_dir():
        path = path / "meltano.yml"
    if not path.exists():
        raise MeltanoError("no such file: a Meltano project is a directory holding meltano.yml", str(path))
    main = _Doc(path)
    docs = [main, *(_Doc(p) for p in _included(main))]

    plugins: dict[tuple[str, str], _Entry] = {}
    envs: dict[str, tuple[_Doc, dict[str, Any]]] = {}
    for doc in docs:
        for kind, entry in _plugin_entries(doc, doc.data):
            first = plugins.get((kind, entry.name))
            if first is not None:
                raise doc.error(f"{entry.label} is defined twice (first at {first.doc.where(first.data)})", entry.data)
            plugins[kind, entry.name] = entry
        for env in _list(doc, doc.data, "environments"):
            if not isinstance(env, dict) or not isinstance(env.get("name"), str):
                raise doc.error("each of `environments` must be a mapping with a `name`", env if isinstance(env, (dict, list))
                                else doc.data["environments"])
            if env["name"] in envs:
                first_doc, first_env = envs[env["name"]]
                raise doc.error(f"environment `{env['name']}` is defined twice (first at {first_doc.where(first_env)})", env)
            envs[env["name"]] = (doc, env)

    default = main.data.get("default_environment")
    if default is not None and not isinstance(default, str):
        raise main.error(f"`default_environment` must be a string, not {_type(default)}", main.data, "default_environment")
    active = environment if environment is not None else default
    overrides: dict[tuple[str, str], _Entry] = {}
    suffix: str | None = None
    suffix_at: tuple[str | None, int | None] = (None, None)
    if active is not None:
        if active not in envs:
            what = "no environment" if environment is not None else "default_environment names no environment"
            message = f"{what} `{active}` in this Meltano project{_suggest(active, envs, 'environments')}"
            raise main.error(message, main.data, "default_environment") if environment is None else MeltanoError(message, main.path)
        env_doc, env = envs[active]
        suffix = env.get("state_id_suffix")
        if suffix is not None and not isinstance(suffix, (str, int)):
            raise env_doc.error(f"environment `{active}`: `state_id_suffix` must be a string", env, "state_id_suffix")
        suffix = None if suffix is None else str(suffix)
        suffix_at = (env_doc.path, env_doc.line(env, "state_id_suffix"))
        env_config = env.get("config") or {}
        if not isinstance(env_config, dict):
            raise env_doc.error(f"environment `{active}`: `config` must be a mapping, not {_type(env_config)}", env, "config")
        for kind, entry in _plugin_entries(env_doc, env_config, f"environment `{active}`: ", "config."):
            if (kind, entry.name) not in plugins:
                raise env_doc.error(
                    f"environment `{active}` configures {entry.label}, which this project does not define"
                    f"{_suggest(entry.name, _names(plugins, kind), _SECTIONS[kind])}",
                    entry.data,
                )
            if (kind, entry.name) in overrides:
                raise env_doc.error(f"environment `{active}` configures {entry.label} twice", entry.data)
            entry.label = f"environment `{active}`, {entry.label}"
            overrides[kind, entry.name] = entry

    return MeltanoProject(
        path=path,
        files=tuple(Path(d.path) for d in docs),
        environment=active,
        environments=tuple(envs),
        state_backend_uri=_state_backend_uri(main),
        state_id_suffix=suffix,
        state_id_suffix_at=suffix_at,
        plugins=plugins,
        overrides=overrides,
    )


def _list(doc: _Doc, parent: dict[str, Any], key: str, shown: str = "") -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise doc.error(f"{shown or f'`{key}`'} must be a list, not {_type(value)}", parent, key)
    return value


def _plugin_entries(doc: _Doc, parent: dict[str, Any], ctx: str = "", at: str = "") -> Iterable[tuple[str, _Entry]]:
    """(kind, entry) of the extractors and loaders under ``parent['plugins']``."""
    section = parent.get("plugins")
    if section is None:
        return
    if not isinstance(section, dict):
        raise doc.error(f"{ctx}`{at}plugins` must be a mapping (extractors:, loaders:), not {_type(section)}", parent, "plugins")
    for kind, key in _SECTIONS.items():
        for item in _list(doc, section, key, f"{ctx}`{at}plugins.{key}`"):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise doc.error(f"{ctx}each of `{at}plugins.{key}` must be a mapping with a `name`",
                                item if isinstance(item, (dict, list)) else section[key])
            yield kind, _Entry(item, doc, item["name"], f"{kind} `{item['name']}`")


def _included(main: _Doc) -> list[Path]:
    """The files ``include_paths`` names, in pattern order, each once, never meltano.yml itself."""
    patterns = _list(main, main.data, "include_paths")
    root = Path(main.path).parent
    own = Path(main.path).resolve()
    found: dict[Path, None] = {}
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise main.error(f"each of `include_paths` must be a glob pattern (a string), not {pattern!r}", patterns)
        if Path(pattern).is_absolute():
            raise main.error(f"include_paths pattern `{pattern}` must be relative to the project directory", patterns)
        for match in sorted(root.glob(pattern)):
            if not match.is_file():
                raise main.error(f"include_paths pattern `{pattern}` matches {match}, which is not a file", patterns)
            resolved = match.resolve()
            if resolved != own:
                found.setdefault(resolved)
    return list(found)


def _state_backend_uri(main: _Doc) -> str:
    data = main.data
    uri = data.get("state_backend.uri")
    key: str = "state_backend.uri"
    node: Any = data
    backend = data.get("state_backend")
    if uri is None and backend is not None:
        if not isinstance(backend, dict):
            raise main.error(f"`state_backend` must be a mapping (uri: ...), not {_type(backend)}", data, "state_backend")
        uri, key, node = backend.get("uri"), "uri", backend
    if uri is None:
        return "systemdb"  # Meltano's default
    if not isinstance(uri, str):
        raise main.error(f"`state_backend.uri` must be a string, not {_type(uri)}", node, key)
    return uri


# --- Meltano's file:// state backend --------------------------------------------------------------


def read_file_state(uri: str, state_id: str) -> dict[str, Any] | None:
    """The Singer state Meltano would give the tap for ``state_id`` from its ``file://`` state backend at
    ``uri`` (``$VAR`` references already expanded): ``<dir>/<state_id>/state.json``'s completed state with
    its partial state merged over it at depth (the partial wins). ``None`` when there is no state file,
    or it holds no ``singer_state``.

    :raises MeltanoError: ``uri`` is not a local ``file://`` URI, the id cannot name a directory, or the
        file is not a Meltano state document.
    """
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme != "file":
        backend = uri if "://" not in uri else f"{parsed.scheme}://"
        raise MeltanoError(
            f"state backend `{backend}`: only file:// Meltano state can be imported; export it with "
            f"`meltano state get {state_id}` and load it with `osds singer state set {state_id} @file.json`"
        )
    if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
        raise MeltanoError(f"state backend `{uri}`: give an absolute directory, file:///path/to/state")
    if not state_id or state_id in (".", "..") or "/" in state_id or "\0" in state_id:
        raise MeltanoError(f"state id {state_id!r} cannot name a directory of the file:// state backend")
    state_file = Path(parsed.path) / state_id / "state.json"
    try:
        text = state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise MeltanoError(f"cannot read Meltano state: {exc}", str(state_file)) from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MeltanoError(f"Meltano state is not JSON: {exc}", str(state_file)) from None
    if not isinstance(document, dict):
        raise MeltanoError('Meltano state must be {"completed": {...}, "partial": {...}}', str(state_file))
    parts = []
    for key in ("completed", "partial"):
        part = document.get(key) or {}
        if not isinstance(part, dict):
            raise MeltanoError(f'Meltano state: `{key}` must be an object such as {{"singer_state": {{...}}}}', str(state_file))
        parts.append(part)
    merged = _merge(*parts)
    singer_state = merged.get("singer_state")
    return singer_state if isinstance(singer_state, dict) else None
