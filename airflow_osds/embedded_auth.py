"""Password authentication of the embedded PostgreSQL: the superuser's password file and ``pg_hba.conf``.

The cluster accepts only SCRAM (``scram-sha-256``) on its socket and on 127.0.0.1, so another
local user cannot connect without the password, which lives in one file that only its owner
can read. Clusters created by older versions used ``trust``; :func:`trust_lines` finds them and
:func:`rewrite_hba_to_scram` moves them over. Needs neither Airflow nor psycopg.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = [
    "PASSWORD_FILE",
    "SCRAM",
    "ensure_password_file",
    "read_password",
    "rewrite_hba_to_scram",
    "trust_lines",
    "write_private_file",
]

#: The superuser password's file name, in the state directory.
PASSWORD_FILE = "superuser.password"
SCRAM = "scram-sha-256"
_PRIVATE = 0o600


def write_private_file(path: Path, text: str) -> bool:
    """Create ``path`` (mode 0600) holding ``text`` unless it exists; True if this call created it.

    The text is written to a private temporary file first and then hard-linked into place, so
    another process either sees no file or the whole password, never an empty or half-written one
    (a bare ``O_EXCL`` create would be visible before its write).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.link(tmp, path)  # fails with FileExistsError when another process won
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def read_password(path: Path) -> str:
    """The password in ``path``, after making sure no one but its owner can read the file."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # A copy or an editor may have widened it; a readable superuser password defeats the point.
        path.chmod(_PRIVATE)
    return path.read_text().strip()


def ensure_password_file(path: Path) -> str:
    """The password kept in ``path``, generated (random, URL-safe) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(path, secrets.token_urlsafe(32) + "\n")
    return read_password(path)


def _method_index(fields: list[str]) -> int | None:
    """Where the auth method is in the fields of a ``pg_hba.conf`` record, or None for no record."""
    # "local DATABASE USER METHOD [OPTIONS]" or "host… DATABASE USER ADDRESS METHOD [OPTIONS]",
    # where the address may also be "IP MASK" (one field more).
    if not fields:
        return None
    if fields[0] == "local":
        index = 3
    else:
        index = 5 if len(fields) > 5 and "/" not in fields[3] and fields[4].count(".") == 3 else 4
    return index if len(fields) > index else None


def trust_lines(hba: Path) -> list[int]:
    """Indexes of the lines of ``hba`` (a ``pg_hba.conf``) whose method is ``trust``."""
    found = []
    for index, line in enumerate(hba.read_text().splitlines()):
        fields = line.split("#", 1)[0].split()
        method = _method_index(fields)
        if method is not None and fields[method] == "trust":
            found.append(index)
    return found


def rewrite_hba_to_scram(hba: Path) -> int:
    """Replace every ``trust`` method in ``hba`` with ``scram-sha-256``; returns how many lines changed.

    Written in place (not replaced by a new file), so the file keeps the owner and mode the server
    needs when it runs as another system user.
    """
    lines = hba.read_text().splitlines(keepends=True)
    changed = trust_lines(hba)
    for index in changed:
        body, sep, comment = lines[index].partition("#")
        fields = body.split()
        method = _method_index(fields)
        assert method is not None  # trust_lines only returns records
        fields[method] = SCRAM
        newline = "\n" if lines[index].endswith("\n") else ""
        lines[index] = "\t".join(fields) + (f"  {sep}{comment}" if sep else newline)
    with open(hba, "r+") as handle:
        handle.write("".join(lines))
        handle.truncate()
    return len(changed)
