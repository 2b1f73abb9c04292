"""Stand-ins for Jinja markup, so that a SQL template can be tokenized and parsed unrendered.

A SQL step's text is a Jinja template rendered at run time, but its tables are read at DAG
parse time. Each ``{{ … }}`` becomes an identifier-shaped placeholder: inside a quoted string it
stays part of the string, and where a table name is expected it yields a table the scanner
recognises and drops, because the real name is only known once rendered. ``{% … %}`` and
``{# … #}`` become block comments, which keeps every branch of an ``{% if %}`` visible while
adding no tokens. Every stand-in maps back to its original, so statement texts handed back to
callers (which may be executed) are byte-for-byte what the user wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MaskedSql", "mask"]

# Jinja itself ends an expression at the first "}}", whatever SQL quoting surrounds it, so a
# plain non-greedy match finds the same spans the renderer will.
_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


@dataclass(frozen=True)
class MaskedSql:
    """SQL with its Jinja markup replaced by stand-ins.

    :param text: the SQL to tokenize.
    :param prefix: the text every stand-in contains, chosen so that it does not occur in the
        original SQL; an identifier containing it came from a template.
    :param originals: the markup each stand-in replaced, by stand-in number.
    """

    text: str
    prefix: str
    originals: tuple[str, ...]

    def unmask(self, text: str) -> str:
        """Put the original markup back into a slice of :attr:`text`."""
        if not self.originals:
            return text
        pattern = re.compile(rf"/\*{self.prefix}t(\d+)__\*/|{self.prefix}e(\d+)__")
        return pattern.sub(lambda m: self.originals[int(m.group(1) or m.group(2))], text)


def mask(sql: str) -> MaskedSql:
    """Replace the Jinja expressions, statements and comments of ``sql`` by stand-ins."""
    prefix = "__osds_jinja_"
    while prefix in sql:  # the user's SQL must never be mistaken for a stand-in
        prefix += "x_"
    originals: list[str] = []

    def stand_in(match: re.Match[str]) -> str:
        originals.append(match.group())
        number = len(originals) - 1
        return f"{prefix}e{number}__" if match.group().startswith("{{") else f"/*{prefix}t{number}__*/"

    text = _MARKUP.sub(stand_in, sql)
    return MaskedSql(text=text, prefix=prefix, originals=tuple(originals))
