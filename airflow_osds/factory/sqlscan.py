"""Which tables a SQL script reads and writes, found without a database or a full parser.

DAG parsing must stay fast and offline, so this is a small tokenizer plus a scan for the
clauses that name tables (``INSERT INTO``, ``CREATE TABLE … AS``, ``UPDATE``, ``FROM``,
``JOIN`` …), aware of CTE names, subqueries, function calls such as
``extract(day FROM ts)`` and temporary tables. It is deliberately conservative: what it
cannot see (a table name produced by Jinja, dynamic SQL) is not guessed, and a step can
always state ``reads:``/``writes:`` explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["SqlIO", "scan_sql", "split_statements"]

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<line_comment>--[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$)
  | (?P<string>[EeBbXxUu]?'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<word>[A-Za-z_][\w$]*)
  | (?P<param>\$\d+|%\(\w+\)s|%s|:\w+)
  | (?P<number>\d+(?:\.\d*)?)
  | (?P<punct>::|[(),;.*=<>!+\-/%|\[\]{}^~@#&?:])
    """,
    re.S | re.X,
)

# Keywords after which "(" opens a subquery or a list, never a function call.
_NOT_FUNCTIONS = frozenset(
    "as in exists from join using on and or not where select with values any all some lateral "
    "into table union intersect except returning when then else case stdin stdout program".split()
)
_TABLE_PREFIX_SKIP = frozenset({"only", "lateral"})


@dataclass(frozen=True)
class _Tok:
    kind: str  # "word" (unquoted, lower-cased), "ident" (quoted), "punct", "other"
    text: str


@dataclass
class SqlIO:
    """Tables as ``schema.table`` or ``table`` (lower-cased unless quoted)."""

    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)


def scan_sql(sql: str) -> SqlIO:
    """Tables read and written by a script of one or more statements."""
    io = SqlIO()
    temp: set[str] = set()
    for statement in _statements(_tokens(sql)):
        _scan_statement(statement, io, temp)
    io.reads -= temp
    io.writes -= temp
    return io


def split_statements(sql: str) -> list[str]:
    """Split a script on top-level semicolons (strings, comments and dollar quotes respected)."""
    parts: list[str] = []
    start = 0
    for match in _TOKEN.finditer(sql):
        if match.lastgroup == "punct" and match.group() == ";":
            parts.append(sql[start : match.start()])
            start = match.end()
    parts.append(sql[start:])
    return [p.strip() for p in parts if _has_code(p)]


def _has_code(sql: str) -> bool:
    return any(m.lastgroup not in ("ws", "line_comment", "block_comment") for m in _TOKEN.finditer(sql))


def _tokens(sql: str) -> list[_Tok]:
    sql = _JINJA.sub(" __jinja__ ", sql)
    out: list[_Tok] = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind in ("ws", "line_comment", "block_comment"):
            continue
        text = match.group()
        if kind == "word":
            out.append(_Tok("word", text.lower()))
        elif kind == "quoted":
            out.append(_Tok("ident", text[1:-1].replace('""', '"')))
        elif kind == "punct":
            out.append(_Tok("punct", text))
        else:
            out.append(_Tok("other", text))
    return out


def _statements(tokens: list[_Tok]) -> list[list[_Tok]]:
    statements: list[list[_Tok]] = [[]]
    for tok in tokens:
        if tok.kind == "punct" and tok.text == ";":
            statements.append([])
        else:
            statements[-1].append(tok)
    return [s for s in statements if s]


def _is(tok: _Tok | None, *words: str) -> bool:
    return tok is not None and tok.kind == "word" and tok.text in words


def _is_punct(tok: _Tok | None, text: str) -> bool:
    return tok is not None and tok.kind == "punct" and tok.text == text


class _Cursor:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.tokens[j] if 0 <= j < len(self.tokens) else None

    def read_name(self) -> str | None:
        """Read ``a``, ``a.b`` or ``a.b.c`` at the cursor; return ``schema.table`` / ``table``."""
        parts: list[str] = []
        while True:
            tok = self.peek()
            if tok is None or tok.kind not in ("word", "ident") or tok.text == "__jinja__":
                return None if not parts else ".".join(parts[-2:])
            parts.append(tok.text)
            self.i += 1
            if _is_punct(self.peek(), "."):
                self.i += 1
                continue
            return ".".join(parts[-2:])


def _scan_statement(tokens: list[_Tok], io: SqlIO, temp: set[str]) -> None:
    ctes = _cte_names(tokens)
    in_function = _indexes_inside_function_calls(tokens)
    cur = _Cursor(tokens)
    while cur.i < len(tokens):
        tok = tokens[cur.i]
        prev = tokens[cur.i - 1] if cur.i else None
        if tok.kind != "word" or not _scan_clause(tok.text, prev, cur, io, temp, ctes, in_function=cur.i in in_function):
            cur.i += 1


def _scan_clause(
    word: str, prev: _Tok | None, cur: _Cursor, io: SqlIO, temp: set[str], ctes: set[str], *, in_function: bool
) -> bool:
    if word == "from" and _is(prev, "delete"):
        cur.i += 1
        if (name := cur.read_name()) is not None:
            io.writes.add(name)
        return True
    if word == "from" and not in_function:
        if _is(prev, "distinct") and _is(cur.peek(-2), "is", "not"):
            return False  # "a IS [NOT] DISTINCT FROM b" compares values
        cur.i += 1
        _read_table_list(cur, io, ctes)
        return True
    if word in ("join", "using") and not in_function:
        cur.i += 1
        _read_table_list(cur, io, ctes, single=True)
        return True
    if word in ("into", "update", "truncate", "copy"):
        if word == "into" and not _is(prev, "insert", "merge"):
            return False
        if word == "update" and _is(cur.peek(1), "set"):
            return False  # MERGE … WHEN MATCHED THEN UPDATE SET
        cur.i += 1
        if word == "truncate" and _is(cur.peek(), "table"):
            cur.i += 1
        while _is(cur.peek(), "only"):
            cur.i += 1
        name = cur.read_name()
        if name:
            io.writes.add(name)
        return True
    if word == "create":
        return _scan_create(cur, io, temp)
    if _is(prev, "refresh") and word == "materialized":
        cur.i += 2 if _is(cur.peek(1), "view") else 1
        if (name := cur.read_name()) is not None:
            io.writes.add(name)
        return True
    return False


def _scan_create(cur: _Cursor, io: SqlIO, temp: set[str]) -> bool:
    cur.i += 1
    is_temp = False
    while _is(cur.peek(), "or", "replace", "temp", "temporary", "unlogged", "global", "local", "materialized", "recursive"):
        is_temp = is_temp or _is(cur.peek(), "temp", "temporary")
        cur.i += 1
    if not _is(cur.peek(), "table", "view"):
        return True  # CREATE SCHEMA / INDEX / FUNCTION …: no table data written
    cur.i += 1
    if _is(cur.peek(), "if") and _is(cur.peek(1), "not") and _is(cur.peek(2), "exists"):
        cur.i += 3
    name = cur.read_name()
    if name:
        (temp if is_temp else io.writes).add(name)
    return True


def _read_table_list(cur: _Cursor, io: SqlIO, ctes: set[str], *, single: bool = False) -> None:
    while True:
        while _is(cur.peek(), *_TABLE_PREFIX_SKIP):
            cur.i += 1
        tok = cur.peek()
        if tok is None or tok.kind not in ("word", "ident") or (tok.kind == "word" and tok.text in _NOT_FUNCTIONS):
            return
        start = cur.i
        name = cur.read_name()
        if name is None:
            return
        if _is_punct(cur.peek(), "("):
            cur.i = start + 1  # a set-returning function such as generate_series(…)
            return
        if name not in ctes:
            io.reads.add(name)
        if single:
            return
        # Skip an alias ("orders o", "orders AS o") before a comma-separated next table.
        if _is(cur.peek(), "as"):
            cur.i += 1
        if cur.peek() is not None and cur.peek().kind in ("word", "ident") and not _is(cur.peek(), *_CLAUSE_WORDS):
            cur.i += 1
        if not _is_punct(cur.peek(), ","):
            return
        cur.i += 1


_CLAUSE_WORDS = frozenset(
    "where group order limit offset having window join left right full inner outer cross natural on using "
    "union intersect except returning for fetch set when".split()
)


def _cte_names(tokens: list[_Tok]) -> set[str]:
    """Names defined by ``WITH name AS (…), other AS (…)`` anywhere in the statement."""
    names: set[str] = set()
    for i, tok in enumerate(tokens):
        if tok.kind in ("word", "ident") and i + 2 < len(tokens):
            after = tokens[i + 1]
            if _is(after, "as") and _is_punct(tokens[i + 2], "(") and i > 0:
                before = tokens[i - 1]
                if _is(before, "with", "recursive") or _is_punct(before, ","):
                    names.add(tok.text)
            elif _is_punct(after, "(") and i > 0 and _is(tokens[i - 1], "with", "recursive"):
                names.add(tok.text)  # WITH name(col, …) AS (…)
    return names


def _indexes_inside_function_calls(tokens: list[_Tok]) -> set[int]:
    """Indexes of tokens whose innermost parenthesis is a function call's.

    A "(" preceded by an identifier that is not a keyword opens a function call unless its
    content starts with SELECT/WITH/VALUES (``array(SELECT …)`` is still a subquery).
    """
    inside: set[int] = set()
    stack: list[bool] = []
    for i, tok in enumerate(tokens):
        if _is_punct(tok, "("):
            prev = tokens[i - 1] if i else None
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            stack.append(
                prev is not None
                and prev.kind in ("word", "ident")
                and not (prev.kind == "word" and prev.text in _NOT_FUNCTIONS)
                and not _is(nxt, "select", "with", "values")
            )
        elif _is_punct(tok, ")") and stack:
            stack.pop()
        elif stack and stack[-1]:
            inside.add(i)
    return inside
