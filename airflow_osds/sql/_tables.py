"""The tables one parsed statement reads and writes, found by walking its sqlglot tree.

Every table reference in the tree is a read unless its role says otherwise: the target of
INSERT / UPDATE / DELETE / MERGE / TRUNCATE / CREATE TABLE|VIEW / SELECT INTO / ``COPY … FROM``
is a write. Targets can appear anywhere (a data-modifying CTE such as
``WITH gone AS (DELETE FROM a RETURNING *) …`` writes ``a``), so roles are decided per node
rather than per statement.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from sqlglot import TokenType, exp
from sqlglot.errors import TokenError

from airflow_osds.sql import _statements
from airflow_osds.sql._statements import Statement
from airflow_osds.sql.scan import TableName

__all__ = ["StatementIO", "scan_statement"]

# Statements that move no table rows, by their first word. sqlglot 30 parses several of them
# only as opaque commands (VACUUM, SHOW, SAVEPOINT, CREATE EXTENSION) or as bare expressions
# (CHECKPOINT, LISTEN, DISCARD ALL); reporting them as unparsed would bury the warnings that
# matter under noise, and no reading of them could name a table the script reads or writes.
_NO_DATA_HEADS = frozenset(
    "abort alter analyse analyze begin checkpoint cluster comment commit deallocate discard drop end grant "
    "listen lock notify reindex release reset revoke rollback savepoint security set show start unlisten "
    "vacuum".split()
)
# CREATE of these objects defines no table rows (CREATE SCHEMA, INDEX and FUNCTION included).
_NO_DATA_CREATE_KINDS = frozenset(
    "access aggregate cast collation constraint conversion database default domain event extension function "
    "group index language operator policy procedural procedure publication role rule schema sequence server "
    "statistics subscription tablespace text transform trigger trusted type unique user".split()
)
# Parsed statements that move no rows even though they name tables (DROP TABLE t, GRANT … ON t).
_NO_DATA_TREES: tuple[type[exp.Expr], ...] = (
    exp.Alter,
    exp.Analyze,
    exp.Comment,
    exp.Commit,
    exp.Drop,
    exp.Grant,
    exp.Revoke,
    exp.Rollback,
    exp.Set,
    exp.Transaction,
)
_DATA_TREES: tuple[type[exp.Expr], ...] = (
    exp.Query,
    exp.Values,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Copy,
    exp.TruncateTable,
)
# PostgreSQL folds unquoted identifiers with ASCII rules only (downcase_identifier in scan.l
# leaves non-ASCII letters alone in multibyte encodings such as UTF-8); str.lower would not.
_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


@dataclass
class StatementIO:
    """What one statement does to tables.

    :param reads: tables it reads.
    :param writes: tables it writes, temporary ones excluded.
    :param temporary: names of the temporary tables it creates.
    """

    reads: set[TableName] = field(default_factory=set)
    writes: set[TableName] = field(default_factory=set)
    temporary: set[str] = field(default_factory=set)


class _Opaque(Exception):
    """The tree holds a part sqlglot did not parse (an ``exp.Command``)."""


def scan_statement(statement: Statement, *, placeholder: str) -> StatementIO | None:
    """The tables ``statement`` reads and writes, or None when they cannot be known.

    :param statement: one statement of a script.
    :param placeholder: text found only in identifiers that stand for Jinja expressions; such
        a table is named only at render time, so it is left out rather than guessed.
    """
    head = [token.text.lower() for token in statement.tokens[:4]]
    if head[0] in _NO_DATA_HEADS or _creates_no_table(head):
        return StatementIO()
    if statement.tokens[0].token_type == TokenType.COMMAND:
        # sqlglot reads the rest of a command as one string, unparsed: skip the parser.
        return _refresh(statement, placeholder) if head[0] == "refresh" else None
    tree = _statements.parse(_without_with_data(statement, head))
    if isinstance(tree, _NO_DATA_TREES):
        return StatementIO()
    if not isinstance(tree, _DATA_TREES):
        return None  # unparsable, an opaque command, or a statement kind the scanner doesn't know
    collector = _Collector(placeholder)
    try:
        collector.walk(tree)
    except _Opaque:
        return None
    return collector.io


def _creates_no_table(head: list[str]) -> bool:
    kinds = [word for word in head[1:] if word not in ("or", "replace")]
    return head[0] == "create" and bool(kinds) and kinds[0] in _NO_DATA_CREATE_KINDS


def _without_with_data(statement: Statement, head: list[str]) -> Statement:
    """Drop the closing ``WITH [NO] DATA`` of ``CREATE MATERIALIZED VIEW … AS query``.

    sqlglot 30 falls back to an opaque command on that clause (it parses it after
    ``CREATE TABLE … AS``), yet the clause only decides whether the view is filled now: the
    grammar puts it last, so cutting those tokens leaves the same target and query.
    """
    if head[0] != "create" or "materialized" not in head:
        return statement
    words = [token.text.lower() for token in statement.tokens[-3:]]
    cut = 3 if words == ["with", "no", "data"] else 2 if words[-2:] == ["with", "data"] else 0
    if not cut or statement.tokens[-cut].token_type != TokenType.WITH:
        return statement
    return Statement(text=statement.text, tokens=statement.tokens[:-cut], sql=statement.sql)


def _refresh(statement: Statement, placeholder: str) -> StatementIO | None:
    """``REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH [NO] DATA]`` writes ``name``.

    sqlglot 30 has no grammar for REFRESH and returns it as an opaque command, but the
    statement's shape is fixed, so its target is read reliably from sqlglot's own tokens and
    table-name parser; anything not of that shape stays unparsed.
    """
    if len(statement.tokens) != 2 or statement.tokens[1].token_type != TokenType.STRING:
        return None
    rest = statement.tokens[1].text  # the statement after REFRESH, as written
    try:
        tokens = _statements.tokenize(rest)
    except TokenError:
        return None
    words = [token.text.lower() for token in tokens]
    start = 3 if words[2:3] == ["concurrently"] else 2
    end = next((i for i in range(start, len(tokens)) if tokens[i].token_type == TokenType.WITH), len(tokens))
    if words[:2] != ["materialized", "view"] or end == start:
        return None
    if words[end:] not in ([], ["with", "data"], ["with", "no", "data"]):
        return None
    table = _statements.parse_table(rest[tokens[start].start : tokens[end - 1].end + 1])
    if table is None:
        return None
    name = _table_name(table, placeholder)
    return StatementIO(writes={name} if name is not None else set())


def _identifier(node: exp.Identifier) -> str:
    text = str(node.this)
    return text if node.quoted else text.translate(_FOLD)


def _table_name(table: exp.Table, placeholder: str) -> TableName | None:
    """The normalised name of a table reference; None for a function call or a template."""
    if not isinstance(table.this, exp.Identifier):
        return None  # generate_series(…), s.f(…), ROWS FROM (…): a function, not a table
    name = _identifier(table.this)
    db = table.args.get("db")
    schema = _identifier(db) if isinstance(db, exp.Identifier) else None
    if placeholder in name or (schema is not None and placeholder in schema):
        return None
    catalog = table.args.get("catalog")
    if isinstance(catalog, exp.Identifier) and placeholder in catalog.this:
        return None
    return TableName(schema=schema, table=name)


class _Collector:
    """Walks one tree, sorting its table references into reads and writes."""

    def __init__(self, placeholder: str) -> None:
        self.placeholder = placeholder
        self.io = StatementIO()

    def walk(self, tree: exp.Expr) -> None:
        # Iterative: long AND/OR chains nest deeper than Python's recursion limit.
        stack: list[tuple[exp.Expr, frozenset[str]]] = [(tree, frozenset())]
        while stack:
            node, ctes = stack.pop()
            if isinstance(node, exp.Command):
                raise _Opaque
            if isinstance(node, exp.Lock):
                continue  # FOR UPDATE OF b / FOR SHARE: locks rows, names no new table
            if isinstance(node, exp.Table):
                self._read(node, ctes)
            stack.extend(self._children(node, ctes))

    def _read(self, table: exp.Table, ctes: frozenset[str]) -> None:
        name = _table_name(table, self.placeholder)
        if name is not None and not (name.schema is None and name.table in ctes):
            self.io.reads.add(name)

    def _write(self, target: exp.Expr | None, *, temporary: bool = False) -> None:
        if isinstance(target, exp.Schema):  # INSERT INTO t (a, b) / CREATE TABLE t (a int)
            target = target.this
        if not isinstance(target, exp.Table) or (name := _table_name(target, self.placeholder)) is None:
            return  # MERGE's WHEN … THEN INSERT (cols) has no table; a template names none
        if temporary or name.schema == "pg_temp":
            self.io.temporary.add(name.table)
        else:
            self.io.writes.add(name)

    def _children(self, node: exp.Expr, ctes: frozenset[str]) -> list[tuple[exp.Expr, frozenset[str]]]:
        """The children to visit, each with the CTE names visible in it."""
        children = self._read_children(node)
        with_ = next((child for child in children if isinstance(child, exp.With)), None)
        if with_ is None:
            return [(child, ctes) for child in children]
        names = [_cte_name(cte) for cte in with_.expressions]
        visible = ctes | frozenset(names)
        out = [(child, visible) for child in children if child is not with_]
        for i, cte in enumerate(with_.expressions):
            # Without RECURSIVE a CTE sees only the ones before it: in
            # "WITH x AS (SELECT * FROM x)" the inner x is the real table.
            out.append((cte.this, visible if with_.args.get("recursive") else ctes | frozenset(names[:i])))
        return out

    def _read_children(self, node: exp.Expr) -> list[exp.Expr]:
        """Record the tables ``node`` itself writes; return the children whose tables are read."""
        if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Merge)):
            self._write(node.this)
            return [child for child in node.iter_expressions() if child is not node.this]
        if isinstance(node, exp.Create):
            if str(node.args.get("kind") or "").upper() not in ("TABLE", "VIEW"):
                return []  # CREATE SCHEMA / INDEX / FUNCTION …: no table rows written
            self._write(node.this, temporary=_is_temporary(node))
            # Only the AS query is read: LIKE t and REFERENCES t name tables no row comes from.
            query = node.args.get("expression")
            return [child for child in node.iter_expressions() if child is query or isinstance(child, exp.With)]
        if isinstance(node, exp.Into):  # SELECT … INTO [TEMP] t FROM …
            self._write(node.this, temporary=bool(node.args.get("temporary")))
            return []
        if isinstance(node, exp.Copy) and node.args.get("kind"):  # COPY t FROM …: a load
            self._write(node.this)
            return []  # (COPY t TO … and COPY (SELECT …) TO … fall through: reads)
        if isinstance(node, exp.TruncateTable):
            for table in node.expressions:
                self._write(table)
            return []
        return list(node.iter_expressions())


def _cte_name(cte: exp.Expr) -> str:
    alias = cte.args.get("alias")
    identifier = alias.this if isinstance(alias, exp.TableAlias) else None
    return _identifier(identifier) if isinstance(identifier, exp.Identifier) else ""


def _is_temporary(create: exp.Create) -> bool:
    properties = create.args.get("properties")
    return isinstance(properties, exp.Properties) and any(
        isinstance(p, exp.TemporaryProperty) for p in properties.expressions
    )
