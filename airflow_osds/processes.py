"""Process checks shared by the local servers (Superset, ``osds up``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie has exited (its parent just has not reaped it yet), so it does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
