"""Wait for a file, a glob match or an object-store object."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_osds.operators._lineage import OpenLineageMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PathSensor"]


class PathSensor(OpenLineageMixin, BaseSensorOperator):
    """
    Succeeds when ``path`` exists: a local path or glob, or any ``ObjectStoragePath`` URL
    (``s3://…``, ``gs://…``, ``file://…``) whose filesystem is installed.

    :param path: what must exist (templated).
    :param base_dir: directory that relative local paths resolve against.
    """

    template_fields: Sequence[str] = ("path",)

    def __init__(self, *, path: str, base_dir: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.base_dir = base_dir

    def poke(self, context: Context) -> bool:
        if "://" in self.path:
            from airflow.sdk import ObjectStoragePath

            found = ObjectStoragePath(self.path).exists()
        else:
            pattern = os.path.join(self.base_dir, self.path)
            found = bool(glob.glob(pattern))
        self.log.info("%s %s", "Found" if found else "Not yet:", self.path)
        return found
