"""Cutting a script into statements with sqlglot's PostgreSQL tokenizer, and parsing each one.

The script is tokenized once. Statements are cut at top-level ``;`` tokens, so quoted strings,
quoted identifiers, comments and dollar-quoted bodies are respected exactly as sqlglot reads
them, and each statement is parsed on its own: one statement sqlglot cannot parse must not hide
the tables of the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel
from sqlglot.parser import Parser

__all__ = ["Statement", "parse", "parse_table", "statements", "tokenize"]


@dataclass(frozen=True)
class Statement:
    """One statement of a script.

    :param text: the statement's source text, trimmed; leading comments are kept.
    :param tokens: its tokens, without the closing ``;``.
    :param sql: the whole script, which the tokens' positions refer to.
    """

    text: str
    tokens: tuple[Token, ...]
    sql: str


@cache
def _dialect() -> Dialect:
    return Dialect.get_or_raise("postgres")


def tokenize(sql: str) -> list[Token]:
    """sqlglot's PostgreSQL tokens of ``sql``; raises ``sqlglot.errors.TokenError``."""
    return _dialect().tokenize(sql)


def statements(sql: str) -> list[Statement]:
    """The statements of ``sql`` that hold at least one token (comment-only ones are dropped)."""
    found: list[Statement] = []
    start = 0
    chunk: list[Token] = []
    for token in [*tokenize(sql), None]:
        if token is not None and token.token_type != TokenType.SEMICOLON:
            chunk.append(token)
            continue
        end = len(sql) if token is None else token.start
        if chunk:
            found.append(Statement(text=sql[start:end].strip(), tokens=tuple(chunk), sql=sql))
        if token is not None:
            start, chunk = token.end + 1, []
    return found


def parse(statement: Statement) -> exp.Expr | None:
    """The statement's syntax tree, or None when sqlglot cannot parse it."""
    try:
        with _quiet_command_fallback():
            trees = _parser().parse(list(statement.tokens), statement.sql)
    except Exception:  # noqa: BLE001
        # ParseError is the expected failure, but a defect in a third-party parser on one
        # statement must cost that statement's tables, not the DAG's import.
        return None
    return trees[0] if len(trees) == 1 else None


def parse_table(sql: str) -> exp.Table | None:
    """Parse ``sql`` as exactly one table name (``t``, ``s.t``, ``db.s.t``), or return None."""
    try:
        tables = _parser().parse_into(exp.Table, tokenize(sql), sql)
    except Exception:  # noqa: BLE001 (as in parse: a name sqlglot cannot read is no name)
        return None
    table = tables[0] if len(tables) == 1 else None
    return table if isinstance(table, exp.Table) and isinstance(table.this, exp.Identifier) else None


def _parser() -> Parser:
    # A parser keeps state between calls, so each caller gets its own (callers may be threads).
    return _dialect().parser(error_level=ErrorLevel.IMMEDIATE)


class _DropCommandFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


@contextmanager
def _quiet_command_fallback() -> Iterator[None]:
    """Silence sqlglot's warning that it parsed a statement only as an opaque command.

    The scanner reports those statements itself (``SqlIO.unparsed``) and its caller decides
    how to warn; sqlglot's own log line would be a second, unattributed warning. The filter is
    attached only for the duration of one parse, so other users of sqlglot keep their logs.
    """
    logger = logging.getLogger("sqlglot")
    quiet = _DropCommandFallback()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
