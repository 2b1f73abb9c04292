"""Singer state kept in the warehouse: one row per state id in ``osds_state.singer_state`` (no Airflow imports).

The state is the last line the *target* printed (it has committed everything before it), stored as
it arrives, so a failed run keeps the last committed point and its retry resumes there. The id
derives from pipeline, step, tap and target (:func:`state_id`), Meltano's ``<env>:<tap>-to-<target>``
idea, unless a step names its own. Every function takes a psycopg 3 connection in autocommit mode.
"""

from __future__ import annotations

import json
import weakref
from datetime import datetime
from typing import Any, NamedTuple

from airflow_osds.postgres import STATE_SCHEMA, create_once

__all__ = ["STATE_TABLE", "StoredState", "clear", "ensure_table", "get", "list_states", "put", "state_id"]

STATE_TABLE = f"{STATE_SCHEMA}.singer_state"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA};
CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
    state_id text PRIMARY KEY,
    state jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


class StoredState(NamedTuple):
    state_id: str
    updated_at: datetime
    size: int  # bytes of its JSON


def state_id(pipeline: str, step: str, tap: str, target: str) -> str:
    """The default id: ``<pipeline>:<step>:<tap>-to-<target>``."""
    return f"{pipeline}:{step}:{tap}-to-{target}"


# Connections that have the table (a sync stores a state per committed batch: one DDL per connection).
_ENSURED: weakref.WeakSet[Any] = weakref.WeakSet()


def ensure_table(conn: Any) -> None:
    if conn not in _ENSURED:
        create_once(conn, _DDL)
        _ENSURED.add(conn)


def get(conn: Any, sid: str) -> Any:
    """The stored state, or ``None``."""
    ensure_table(conn)
    row = conn.execute(f"SELECT state FROM {STATE_TABLE} WHERE state_id = %s", (sid,)).fetchone()
    return row[0] if row else None


def put(conn: Any, sid: str, state: Any) -> None:
    """Store ``state`` for ``sid`` (replacing what was there): its own committed statement."""
    ensure_table(conn)
    conn.execute(
        f"INSERT INTO {STATE_TABLE} (state_id, state) VALUES (%s, %s::jsonb) "
        "ON CONFLICT (state_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        (sid, json.dumps(state)),
    )


def clear(conn: Any, sid: str) -> bool:
    """Forget ``sid``'s state (the next run starts from scratch); ``False`` when there was none."""
    ensure_table(conn)
    return conn.execute(f"DELETE FROM {STATE_TABLE} WHERE state_id = %s", (sid,)).rowcount > 0


def list_states(conn: Any) -> list[StoredState]:
    ensure_table(conn)
    rows = conn.execute(f"SELECT state_id, updated_at, octet_length(state::text) FROM {STATE_TABLE} ORDER BY state_id")
    return [StoredState(*row) for row in rows.fetchall()]
