"""The Snowplow integration tests share the unit tests' registry helpers."""

from tests.unit.snowplow._support import IGLU_CENTRAL

__all__ = ["IGLU_CENTRAL"]
