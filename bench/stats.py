"""Medians with their range, formatted for RESULTS.md."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

__all__ = ["Stat"]


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        return cls(statistics.median(values), min(values), max(values))

    def _fmt(self, scale: float, unit: str) -> str:
        med, lo, hi = self.median * scale, self.low * scale, self.high * scale
        return f"{med:,.0f} {unit}" if lo == hi else f"{med:,.0f} {unit} ({lo:,.0f}–{hi:,.0f})"

    def ms(self) -> str:
        """Seconds as milliseconds."""
        return self._fmt(1000, "ms")

    def mib(self) -> str:
        """KiB as MiB."""
        return self._fmt(1 / 1024, "MiB")
