"""Iglu schema coordinates: :class:`SchemaKey` (``iglu:vendor/name/format/M-R-A``), :class:`SchemaCriterion` (``1-0-*``)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SchemaCriterion", "SchemaKey"]

# The reference grammar (snowplow-python-analytics-sdk json_shredder.py): the model starts at 1,
# no leading zeros.
_URI = re.compile(
    r"^iglu:([a-zA-Z0-9-_.]+)/([a-zA-Z0-9-_]+)/([a-zA-Z0-9-_]+)/([1-9][0-9]*(?:-(?:0|[1-9][0-9]*)){2})$"
)
_CRITERION = re.compile(
    r"^iglu:([a-zA-Z0-9-_.]+)/([a-zA-Z0-9-_]+)/([a-zA-Z0-9-_]+)/"
    r"(\*|[1-9][0-9]*)-(\*|0|[1-9][0-9]*)-(\*|0|[1-9][0-9]*)$"
)
VERSION_PATTERN = re.compile(r"^([1-9][0-9]*)-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$")


@dataclass(frozen=True, slots=True)
class SchemaKey:
    """The coordinates of one schema: ``iglu:vendor/name/format/model-revision-addition``.

    Keys order by version first — ``(model, revision, addition)`` — then by vendor, name and
    format, so sorting the versions of one schema gives SchemaVer order and the order stays
    total (consistent with ``==``) for mixed lists.
    """

    vendor: str
    name: str
    format: str
    model: int
    revision: int
    addition: int
    _hash: int = field(init=False, repr=False, compare=False)
    _uri: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The grammar allows "." in vendors; a vendor of only dots would climb out of a
        # static registry's directory.
        if not self.vendor.strip("."):
            raise ValueError(f"Invalid Iglu vendor {self.vendor!r}")
        # Hashed and spelt once: the loader looks keys up several times per entity of every event.
        object.__setattr__(self, "_hash", hash((self.vendor, self.name, self.format, self.model, self.revision,
                                                self.addition)))
        object.__setattr__(self, "_uri", f"iglu:{self.vendor}/{self.name}/{self.format}/{self.version}")

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[Any, ...]:
        # Made again on unpickling: a string's hash differs between processes.
        return (SchemaKey, (self.vendor, self.name, self.format, self.model, self.revision, self.addition))

    @classmethod
    def parse(cls, uri: str) -> SchemaKey:
        """Parse ``iglu:vendor/name/format/M-R-A``; ``ValueError`` names the URI and the grammar."""
        return _parse_key(uri)

    @classmethod
    def from_self(cls, self_block: Any) -> SchemaKey:
        """The key a schema's ``self`` block (``{"vendor","name","format","version"}``) declares."""
        if not isinstance(self_block, Mapping):
            raise ValueError("the schema's 'self' must be an object with vendor, name, format and version")
        parts = [self_block.get(k) for k in ("vendor", "name", "format", "version")]
        if not all(isinstance(p, str) for p in parts):
            raise ValueError("the schema's 'self' needs string vendor, name, format and version")
        return cls.parse(f"iglu:{parts[0]}/{parts[1]}/{parts[2]}/{parts[3]}")

    @property
    def version(self) -> str:
        return f"{self.model}-{self.revision}-{self.addition}"

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def path(self) -> str:
        """``vendor/name/format/M-R-A``: the path under a registry's ``schemas/``."""
        return f"{self.vendor}/{self.name}/{self.format}/{self.version}"

    def _order(self) -> tuple[int, int, int, str, str, str]:
        return (self.model, self.revision, self.addition, self.vendor, self.name, self.format)

    def __lt__(self, other: SchemaKey) -> bool:
        return self._order() < other._order()

    def __le__(self, other: SchemaKey) -> bool:
        return self._order() <= other._order()

    def __gt__(self, other: SchemaKey) -> bool:
        return self._order() > other._order()

    def __ge__(self, other: SchemaKey) -> bool:
        return self._order() >= other._order()

    def __str__(self) -> str:
        return self.uri


@functools.lru_cache(maxsize=4096)
def _parse_key(uri: str) -> SchemaKey:
    # Cached: the same few URIs arrive with every event.
    match = _URI.match(uri) if isinstance(uri, str) else None
    if match is None:
        raise ValueError(
            f"Invalid Iglu schema URI {uri!r}: expected iglu:<vendor>/<name>/<format>/<model>-<revision>-<addition>, "
            "e.g. iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0 (model from 1, no leading zeros)"
        )
    vendor, name, fmt, version = match.groups()
    model, revision, addition = (int(p) for p in version.split("-"))
    return SchemaKey(vendor, name, fmt, model, revision, addition)


@dataclass(frozen=True, slots=True)
class SchemaCriterion:
    """A set of versions of one schema, e.g. ``iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-*``.

    ``None`` stands for ``*``. Used for the envelopes (which accept any ``1-0-*``) and to name a
    model whose version list cannot be found (``SchemaListNotFound``).
    """

    vendor: str
    name: str
    format: str
    model: int | None
    revision: int | None = None
    addition: int | None = None

    @classmethod
    def parse(cls, text: str) -> SchemaCriterion:
        match = _CRITERION.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"Invalid Iglu schema criterion {text!r}: expected iglu:<vendor>/<name>/<format>/<M|*>-<R|*>-<A|*>"
            )
        vendor, name, fmt, *version = match.groups()
        model, revision, addition = (None if p == "*" else int(p) for p in version)
        return cls(vendor, name, fmt, model, revision, addition)

    @property
    def uri(self) -> str:
        parts = ("*" if p is None else str(p) for p in (self.model, self.revision, self.addition))
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{'-'.join(parts)}"

    def matches(self, key: SchemaKey) -> bool:
        return (
            key.vendor == self.vendor
            and key.name == self.name
            and key.format == self.format
            and (self.model is None or key.model == self.model)
            and (self.revision is None or key.revision == self.revision)
            and (self.addition is None or key.addition == self.addition)
        )

    def __str__(self) -> str:
        return self.uri
