"""Keep ``cqrs-orders sql`` a reader: one query over the warehouse's logical names, checked before it runs.

Why Spark's own parser and not a SQL library: the text is checked as the very plan Spark would run, so no
difference between two grammars (Spark's pipe syntax, ``FROM t SELECT``, ``TRANSFORM``, SQL scripting
blocks, ``IDENTIFIER('...')``, Delta's extensions) can let a statement through that a second parser read
as harmless. The parsed plan is not analysed or executed here, so checking it touches no file.

What passes is an *allowlist*: every node of the plan (sub-queries and ``WITH`` definitions included) must
be a plain query operator, every relation a one-part name (the temporary views that
:func:`~cqrs_orders.query.views.register_views` made over this warehouse; a path such as
``delta.`/x``` or ``text.`/etc/passwd``` has two parts), and no function may call into the JVM
(``reflect``). Anything else, a write, DDL, ``SET``, ``CACHE``, a script, is refused with a
:class:`~cqrs_orders.errors.QueryError` naming the first offending part.
"""

from __future__ import annotations

import logging

from cqrs_orders.errors import QueryError

logger = logging.getLogger(__name__)

#: Logical plan operators a parsed read-only query is built from (simple class names, Spark 4.1).
QUERY_OPERATORS = frozenset(
    {
        "Aggregate", "Deduplicate", "Distinct", "Except", "Expand", "Filter", "Generate", "GlobalLimit",
        "Intersect", "Join", "LateralJoin", "LocalLimit", "LocalRelation", "Offset", "OneRowRelation",
        "Pivot", "PipeOperator", "Project", "Range", "RebalancePartitions", "Repartition",
        "RepartitionByExpression", "Sample", "Sort", "SubqueryAlias", "Tail", "Union", "Unpivot", "Window",
        "WithWindowDefinition", "UnresolvedHaving", "UnresolvedHint", "UnresolvedInlineTable",
        "UnresolvedRelation", "UnresolvedSubqueryColumnAliases", "UnresolvedTableValuedFunction",
        "UnresolvedTVFAliases", "UnresolvedWith",
    }
)  # fmt: skip
#: Table-valued functions that only compute (none of them reads a file or a table).
SAFE_TABLE_FUNCTIONS = frozenset(
    {
        "range", "explode", "explode_outer", "inline", "inline_outer", "posexplode", "posexplode_outer",
        "stack", "json_tuple", "variant_explode", "variant_explode_outer",
    }
)  # fmt: skip
#: Functions that call arbitrary static Java methods.
JVM_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})
#: Expressions whose meaning is only known after analysis (``IDENTIFIER('any.name')``).
DEFERRED_EXPRESSIONS = frozenset({"ExpressionWithUnresolvedIdentifier"})

_READS_ONLY = "`sql` only reads: one query over this warehouse's tables and views"


def check_read_only_query(spark, query: str) -> None:
    """Raise :class:`QueryError` unless ``query`` is exactly one read-only query over one-part names.

    A syntax error is raised as Spark's own ``ParseException`` (a ``PySparkException``), like
    ``spark.sql`` would, so the caller explains it the same way.
    """
    plan = _parse(spark, query)
    problem = _first_problem(plan)
    if problem:
        logger.debug("refused %r: %s", query, problem)
        raise QueryError(f"{_READS_ONLY}; {problem}. Pass one SELECT (or WITH ... SELECT) instead.")


def _parse(spark, query: str):
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import ParseException

    try:
        return spark._jsparkSession.sessionState().sqlParser().parsePlan(query)
    except Py4JJavaError as error:
        # Spark 4.0 refuses a SQL script (BEGIN ... END, a CompoundBody from 4.1 on) while parsing, with an
        # exception PySpark leaves unconverted: it is no query either way.
        if "SqlScriptingException" not in error.java_exception.getClass().getName():
            raise
        raise QueryError(
            f"{_READS_ONLY}; it is a SQL script (CompoundBody), not a query. Pass one SELECT (or WITH ... "
            "SELECT) instead."
        ) from None
    except ParseException as error:  # PySpark converts the Java exception on the way out
        if ";" in query and "PARSE_SYNTAX_ERROR" in str(error):
            raise QueryError(
                f"{_READS_ONLY}, and this text holds more than one statement; pass exactly one query "
                "(no ';' between statements)."
            ) from None
        raise


def _first_problem(root) -> str | None:
    """The first refused part of the plan, described for people, or ``None`` when all of it reads."""
    pending = [(root, "it")]
    while pending:
        node, what = pending.pop()
        kind = node.getClass().getSimpleName()
        if kind not in QUERY_OPERATORS:
            return f"{what} is a {kind}, not a query"
        if kind == "UnresolvedRelation":
            parts = _strings(node.multipartIdentifier())
            if len(parts) != 1:
                return f"{'.'.join(f'`{part}`' for part in parts)} is a path or another catalog's table"
        if kind == "UnresolvedTableValuedFunction":
            name = ".".join(_strings(node.name()))
            if name.lower() not in SAFE_TABLE_FUNCTIONS:
                return f"the table function {name}() may read outside the warehouse"
        problem = _expression_problem(node.expressions())
        if problem:
            return problem
        # innerChildren: the sub-queries inside expressions and the definitions of a WITH clause.
        inner = _items(node.children()) + _items(node.innerChildren())
        pending.extend((child, "a part of it") for child in inner)
    return None


def _expression_problem(expressions) -> str | None:
    pending = _items(expressions)
    while pending:
        expression = pending.pop()
        kind = expression.getClass().getSimpleName()
        if kind in DEFERRED_EXPRESSIONS:
            return "IDENTIFIER(...) names are only known when the query runs"
        if kind == "UnresolvedFunction":
            name = _strings(expression.nameParts())[-1].lower()
            if name in JVM_FUNCTIONS:
                return f"{name}() calls into Java"
        pending.extend(_items(expression.children()))
    return None


def _items(seq) -> list:
    """A Scala ``Seq`` (through Py4J) as a Python list."""
    return [seq.apply(index) for index in range(seq.size())]


def _strings(seq) -> list[str]:
    return [str(item) for item in _items(seq)]
