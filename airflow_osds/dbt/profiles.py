"""Render a throw-away dbt ``profiles.yml`` for a PostgreSQL target, and the rules for secrets.

The profile lives in a private temporary directory (mode 0700, file 0600) that exists only
for the duration of one dbt invocation and is always removed. The password is never
written to disk: the file holds ``{{ env_var('DBT_ENV_SECRET_OSDS_PASSWORD') }}`` and the value
travels in the environment of the dbt invocation (:attr:`RenderedProfile.env`), never on a
command line.

**Which secrets are masked in logs** (:func:`is_maskable`). A secret is masked only when it is
at least :data:`MIN_MASKED_LENGTH` characters long *and* does not look like a word: at least
two kinds of characters (lower case, upper case, digits, others) or 16 characters or more.
Masking replaces every occurrence of the value, so masking a password ``select`` or
``postgres`` would turn ``select 1`` into ``*** 1`` and ``Registered adapter: postgres`` into
``Registered adapter: ***`` — destroying the log while hiding nothing an attacker could not
guess. Such a weak password is therefore passed as ``OSDS_DBT_PASSWORD`` instead of the
``DBT_ENV_SECRET_`` variable (dbt scrubs every occurrence of a ``DBT_ENV_SECRET_*`` value from
its own output, with the same effect), and the runner says in the log that it is not masked.
Strong passwords keep dbt's own scrubbing *and* the runner's.

No Airflow imports: the operator layer turns an Airflow connection into a
:class:`PostgresTarget` and hands it here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airflow_osds.dbt.errors import ProfileError

__all__ = [
    "MIN_MASKED_LENGTH",
    "PASSWORD_ENV_VAR",
    "WEAK_PASSWORD_ENV_VAR",
    "PostgresTarget",
    "ProfileError",
    "RenderedProfile",
    "is_maskable",
    "looks_secret",
    "render_profile_yaml",
    "rendered_profile",
]

#: Environment variable carrying the password into dbt's ``env_var()``. The ``DBT_ENV_SECRET_``
#: prefix makes dbt itself scrub the value from its stdout and ``dbt.log`` (dbt allows such
#: variables in ``profiles.yml`` only), on top of the runner's own redaction.
PASSWORD_ENV_VAR = "DBT_ENV_SECRET_OSDS_PASSWORD"
#: Environment variable carrying a password too weak to mask (see :func:`is_maskable`): without
#: the ``DBT_ENV_SECRET_`` prefix, so dbt does not replace every occurrence of it in its output.
WEAK_PASSWORD_ENV_VAR = "OSDS_DBT_PASSWORD"
#: Secrets shorter than this are never masked in logs (see the module docstring).
MIN_MASKED_LENGTH = 8

# dbt-postgres profile keys a caller may add through ``PostgresTarget.options``. An allow-list,
# so a secret-bearing key (``sslpassword`` …) cannot slip onto disk through the back door.
ALLOWED_OPTIONS = frozenset(
    {
        "keepalives_idle",
        "connect_timeout",
        "retries",
        "search_path",
        "role",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "application_name",
    }
)


# Name parts that make a variable name a secret's. "key" alone is not one: unique_key,
# partition_key and sort_key are everyday dbt vars; "api key", "access key" … are.
_SECRET_PARTS = frozenset(
    {"password", "passwd", "pwd", "pw", "passphrase", "secret", "secrets", "token", "tokens", "credential",
     "credentials", "apikey", "dsn"}
)  # fmt: skip
_KEY_QUALIFIERS = frozenset({"api", "access", "private", "secret", "signing", "client", "encryption", "fernet", "ssh"})
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def is_maskable(secret: str) -> bool:
    """Whether ``secret`` is masked in logs: 8+ characters that do not look like a word.

    ``True`` for ``"S3cr3t-long-value"`` or a 16+ character passphrase; ``False`` for
    ``"select"``, ``"postgres"`` or ``"warehouse"``, whose every occurrence in a log is far more
    likely to be SQL or a name than the password.
    """
    if len(secret) < MIN_MASKED_LENGTH:
        return False
    if len(secret) >= 16:
        return True
    kinds = (str.islower, str.isupper, str.isdigit)
    classes = sum(any(test(c) for c in secret) for test in kinds) + any(not c.isalnum() for c in secret)
    return classes >= 2


def looks_secret(name: str) -> bool:
    """Whether a variable called ``name`` (a dbt var, an environment variable) holds a secret.

    ``API_TOKEN``, ``db_password``, ``snowplowApiKey``, ``AIRFLOW__CORE__FERNET_KEY`` do;
    ``unique_key``, ``partition_key``, ``use_seeds`` do not.
    """
    parts = [part.lower() for part in _NAME_PARTS.findall(name)]
    if any(part in _SECRET_PARTS or part.endswith(("password", "secret", "token")) for part in parts):
        return True
    return any(a in _KEY_QUALIFIERS and b in ("key", "keys") for a, b in zip(parts, parts[1:]))


# Which Airflow connection field fills each required profile field (for the error message).
_REQUIRED = {
    "host": "the connection's Host",
    "user": "the connection's Login",
    "dbname": "the connection's Schema (the database name)",
    "schema": "target_schema, or the connection extra dbt_schema",
}


@dataclass(frozen=True)
class PostgresTarget:
    """Connection fields of a dbt-postgres target.

    :param host: host name, IP address, or a unix-socket *directory* (a path starting with
        ``/``; libpq then connects to ``<host>/.s.PGSQL.<port>``).
    :param user: database role.
    :param dbname: database.
    :param schema: schema dbt builds into (custom schemas are suffixed to it).
    :param port: TCP port, also the number in the unix socket's file name.
    :param password: kept out of ``repr`` and out of the rendered file.
    :param threads: dbt's default thread count for this target.
    :param options: extra dbt-postgres keys, see :data:`ALLOWED_OPTIONS`
        (e.g. ``{"sslmode": "require", "keepalives_idle": 30}``).
    """

    host: str
    user: str
    dbname: str
    schema: str
    port: int = 5432
    password: str | None = field(default=None, repr=False)
    threads: int = 4
    options: Mapping[str, Any] = field(default_factory=dict)

    def profile_fields(self) -> dict[str, Any]:
        """The target's mapping as it goes into ``profiles.yml`` (password as an ``env_var`` call).

        :raises ProfileError: a field is empty, unknown, or contains Jinja delimiters
            (dbt renders every string in a profile as Jinja, so ``{{`` in a host name would run).
        """
        for name, where in _REQUIRED.items():
            if not getattr(self, name):
                raise ProfileError(f"dbt profile field {name!r} is empty; set {where}.", field=name)
        unknown = sorted(set(self.options) - ALLOWED_OPTIONS)
        if unknown:
            raise ProfileError(
                f"Unsupported dbt-postgres profile option(s) {unknown}; allowed: {sorted(ALLOWED_OPTIONS)}.",
                field="options",
            )
        if not 0 < int(self.port) < 65536:
            raise ProfileError(f"Port {self.port!r} is not a TCP port number.", field="port")
        if int(self.threads) < 1:
            raise ProfileError(f"threads must be at least 1, got {self.threads!r}.", field="threads")
        fields: dict[str, Any] = {
            "type": "postgres",
            "host": self.host,
            "port": int(self.port),
            "user": self.user,
            # dbt-postgres requires the key; the value only ever lives in the environment.
            "password": f"{{{{ env_var('{self.password_env_var}') }}}}",
            "dbname": self.dbname,
            "schema": self.schema,
            "threads": int(self.threads),
            # No name here: each invocation's connections get their own through PGAPPNAME
            # (see airflow_osds.dbt.backends), which a value in the profile would override.
            "application_name": "",
            **dict(self.options),
        }
        for key, value in fields.items():
            if key != "password" and isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value):
                raise ProfileError(f"dbt profile field {key!r} contains Jinja delimiters: {value!r}.", field=key)
        return fields

    @property
    def password_env_var(self) -> str:
        """The variable the password travels in: :data:`PASSWORD_ENV_VAR`, or
        :data:`WEAK_PASSWORD_ENV_VAR` for a password too weak to mask (see :func:`is_maskable`)."""
        return WEAK_PASSWORD_ENV_VAR if self.password and not is_maskable(self.password) else PASSWORD_ENV_VAR

    def env(self) -> dict[str, str]:
        """Environment the dbt invocation needs for this target (the password)."""
        # An empty value still satisfies env_var(): trust/peer auth needs no password.
        return {self.password_env_var: self.password or ""}


@dataclass(frozen=True)
class RenderedProfile:
    """A rendered profile, valid inside :func:`rendered_profile`'s ``with`` block only.

    :param profiles_dir: directory to pass as ``--profiles-dir``.
    :param profile_name: name to pass as ``--profile``.
    :param target_name: name to pass as ``--target``.
    :param env: environment variables the dbt invocation needs (holds the password).
    """

    profiles_dir: Path
    profile_name: str
    target_name: str
    env: Mapping[str, str] = field(repr=False)

    @property
    def path(self) -> Path:
        """The ``profiles.yml`` file."""
        return self.profiles_dir / "profiles.yml"


def render_profile_yaml(target: PostgresTarget, *, profile_name: str = "osds", target_name: str = "osds") -> str:
    """The text of ``profiles.yml`` with a single profile holding a single target."""
    # No top-level ``config:`` block: dbt >= 1.8 warns that flags moved to dbt_project.yml;
    # the runner turns usage stats off through the environment instead.
    document = {profile_name: {"target": target_name, "outputs": {target_name: target.profile_fields()}}}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


@contextlib.contextmanager
def rendered_profile(
    target: PostgresTarget,
    *,
    profile_name: str = "osds",
    target_name: str = "osds",
    parent_dir: str | os.PathLike[str] | None = None,
) -> Iterator[RenderedProfile]:
    """Write ``profiles.yml`` into a private temp directory; remove it on exit, whatever happens.

    :param target: the connection fields.
    :param profile_name: must match ``profile:`` in the project's ``dbt_project.yml``.
    :param target_name: the output name inside the profile.
    :param parent_dir: where to create the temp directory (default: the system temp dir).
    :raises ProfileError: the fields cannot be rendered.
    """
    text = render_profile_yaml(target, profile_name=profile_name, target_name=target_name)
    # mkdtemp creates the directory 0700 already; chmod again in case of an unusual umask/ACL.
    directory = Path(tempfile.mkdtemp(prefix="osds-dbt-profiles-", dir=parent_dir))
    try:
        directory.chmod(0o700)
        # O_EXCL + explicit mode: the file is never readable by others, not even briefly.
        fd = os.open(directory / "profiles.yml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        yield RenderedProfile(
            profiles_dir=directory, profile_name=profile_name, target_name=target_name, env=target.env()
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
