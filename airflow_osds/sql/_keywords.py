"""PostgreSQL keywords that an identifier must be quoted to be used as.

Taken from ``SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'`` on PostgreSQL 18.6:
the reserved (``R``), type/function-name (``T``) and column-name (``C``) keywords. These are
exactly the keywords ``quote_ident()`` quotes, so ``str(TableName)`` agrees with the server.
"""

from __future__ import annotations

__all__ = ["QUOTED_KEYWORDS"]

_RESERVED = (
    "all analyse analyze and any array as asc asymmetric both case cast check collate column constraint "
    "create current_catalog current_date current_role current_time current_timestamp current_user default "
    "deferrable desc distinct do else end except false fetch for foreign from grant group having in "
    "initially intersect into lateral leading limit localtime localtimestamp not null offset on only or "
    "order placing primary references returning select session_user some symmetric system_user table then "
    "to trailing true union unique user using variadic when where window with"
)
_TYPE_OR_FUNCTION_NAME = (
    "authorization binary collation concurrently cross current_schema freeze full ilike inner is isnull "
    "join left like natural notnull outer overlaps right similar tablesample verbose"
)
_COLUMN_NAME = (
    "between bigint bit boolean char character coalesce dec decimal exists extract float greatest grouping "
    "inout int integer interval json json_array json_arrayagg json_exists json_object json_objectagg "
    "json_query json_scalar json_serialize json_table json_value least merge_action national nchar none "
    "normalize nullif numeric out overlay position precision real row setof smallint substring time "
    "timestamp treat trim values varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest "
    "xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable"
)

QUOTED_KEYWORDS: frozenset[str] = frozenset(f"{_RESERVED} {_TYPE_OR_FUNCTION_NAME} {_COLUMN_NAME}".split())
