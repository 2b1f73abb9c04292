"""pg_hba.conf rewriting and the private password file of the embedded PostgreSQL (no server)."""

from __future__ import annotations

import stat
from pathlib import Path

from airflow_osds.embedded_auth import ensure_password_file, rewrite_hba_to_scram, trust_lines, write_private_file

HBA = """\
# TYPE  DATABASE        USER            ADDRESS                 METHOD
# local all all trust   (a comment mentioning trust stays)
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 md5
host    all             trust           10.0.0.0  255.0.0.0     trust   # a user named trust, IP and mask
hostssl replication     all             192.168.0.0/16          cert
"""


def test_trust_lines_are_the_records_whose_method_is_trust(tmp_path: Path) -> None:
    hba = tmp_path / "pg_hba.conf"
    hba.write_text(HBA)
    assert trust_lines(hba) == [2, 3, 5]


def test_rewrite_changes_only_the_method_and_keeps_the_file(tmp_path: Path) -> None:
    hba = tmp_path / "pg_hba.conf"
    hba.write_text(HBA)
    hba.chmod(0o600)
    inode = hba.stat().st_ino
    assert rewrite_hba_to_scram(hba) == 3
    lines = hba.read_text().splitlines()
    assert trust_lines(hba) == []
    assert lines[1] == "# local all all trust   (a comment mentioning trust stays)"
    assert lines[2].split() == ["local", "all", "all", "scram-sha-256"]
    assert lines[3].split() == ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"]
    assert lines[4] == HBA.splitlines()[4]
    assert lines[5].split("#")[0].split() == ["host", "all", "trust", "10.0.0.0", "255.0.0.0", "scram-sha-256"]
    assert lines[5].endswith("# a user named trust, IP and mask")
    assert hba.stat().st_ino == inode and stat.S_IMODE(hba.stat().st_mode) == 0o600
    assert rewrite_hba_to_scram(hba) == 0


def test_the_password_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "superuser.password"
    first = ensure_password_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 40
    assert ensure_password_file(path) == first
    assert not write_private_file(path, "other\n") and path.read_text().strip() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["superuser.password"]  # no temporary left
    path.chmod(0o640)
    assert ensure_password_file(path) == first and stat.S_IMODE(path.stat().st_mode) == 0o600
