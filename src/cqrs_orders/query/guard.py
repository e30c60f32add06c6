"""Keep the read side a reader: one query over the warehouse's logical names, checked on DataFusion's plan.

Why the engine's own parser and planner, not a SQL library: the text is checked as the very plan DataFusion
would run, so no difference between two grammars can let a statement through that a second parser read as
harmless. Planning touches no file (a Delta table's files are only listed when the plan runs).

Three layers, each enough on its own for what it covers:

- the planner's options refuse DDL (``CREATE [EXTERNAL] TABLE``, ``DROP``), DML (``INSERT``, ``DELETE``,
  ``UPDATE``, ``COPY``) and statements (``SET``, ``PREPARE``), and the context takes exactly one statement;
- the session knows nothing but the warehouse's logical names: no ``information_schema``, no file paths as
  table names, no table function that reads (its only ones compute rows: ``range``, ``generate_series``);
- the plan is walked: every operator must be a plain query operator (``EXPLAIN``, ``DESCRIBE`` and any
  extension are refused), every scanned table a one-part logical name or an allowed table function, and no
  ``WITH`` may reuse a logical name for something else (a reader would take it for the warehouse's table).

A refusal is a :class:`~cqrs_orders.errors.QueryError` that names the offending part and what to pass
instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection

from cqrs_orders.errors import QueryError

logger = logging.getLogger(__name__)

#: Logical plan operators a read-only query is built from (DataFusion's variant names).
QUERY_OPERATORS = frozenset(
    {
        "Aggregate", "Distinct", "EmptyRelation", "Filter", "Join", "Limit", "Projection", "RecursiveQuery",
        "Repartition", "Sort", "Subquery", "SubqueryAlias", "TableScan", "Union", "Unnest", "Values",
        "Window", "WindowExpr",
    }
)  # fmt: skip
#: Table functions that only compute rows (none reads a file or a table), as a plan names their scans.
SAFE_TABLE_FUNCTIONS = frozenset({"range()", "generate_series()"})

READS_ONLY = "a read-side query only reads: one query over this warehouse's tables and views"
_INSTEAD = "Pass one SELECT (or WITH ... SELECT) instead."
_SCAN = re.compile(r"^\s*TableScan: (\S+)", re.MULTILINE)
#: Planner refusals (DataFusion's messages) and what they mean for people.
_REFUSALS = (
    (re.compile(r"only supports a single SQL statement", re.I), None),
    (re.compile(r"DML not supported: (.+)$", re.I), "a write ({}), not a query"),
    (re.compile(r"DDL not supported: (.+)$", re.I), "a definition ({}), not a query"),
    (re.compile(r"Statement not supported: (.+)$", re.I), "a statement ({}), not a query"),
)


def plan_read_only(ctx, query: str, names: Collection[str], view_plan: Callable[[str], str | None]):
    """The DataFrame of ``query`` planned on ``ctx``, or :class:`QueryError` unless it is one read-only query
    over ``names`` (the logical names registered in ``ctx``).

    ``view_plan(name)`` is the indented plan of the registered view ``name`` (``None`` for a table), to
    tell the view from a ``WITH`` clause that reuses its name. A query the planner cannot plan at all (a
    syntax error, an unknown column) raises :class:`QueryError` with DataFusion's own first line.
    """
    from datafusion import SQLOptions

    options = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
    try:
        frame = ctx.sql_with_options(query, options)
    except Exception as error:  # DataFusion raises plain exceptions carrying its message
        message = first_line(error)
        for pattern, meaning in _REFUSALS:
            match = pattern.search(message)
            if match and meaning is None:
                raise QueryError(
                    f"{READS_ONLY}, and this text holds more than one statement; pass exactly one query "
                    "(no ';' between statements)."
                ) from None
            if match:
                refuse(query, meaning.format(match.group(1).strip()))
        raise QueryError(f"the query failed: {message}") from None
    plan = frame.logical_plan()
    problem = _first_problem(plan, set(names), view_plan) or _scan_problem(
        plan.display_indent(), set(names), _recursive_names(plan)
    )
    if problem:
        refuse(query, problem)
    return frame


def refuse(query: str, problem: str):
    logger.debug("refused %r: %s", query, problem)
    raise QueryError(f"{READS_ONLY}; it is {problem}. {_INSTEAD}")


def first_line(error: BaseException) -> str:
    """DataFusion's message without its context lines (and without a Rust backtrace, if any)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _first_problem(root, names: set[str], view_plan: Callable[[str], str | None]) -> str | None:
    """The first refused operator of the plan's tree (``WITH`` definitions and views included)."""
    pending = [root]
    while pending:
        node = pending.pop()
        variant = node.to_variant()
        kind = type(variant).__name__
        if kind not in QUERY_OPERATORS:
            return f"a plan with {kind}, which is not a query operator"
        if kind == "SubqueryAlias":
            alias = str(variant.alias())
            if alias in names and not _is_the_object(node, alias, view_plan):
                return f"a WITH clause (or alias) that reuses the logical name {alias} for another query"
        pending.extend(node.inputs())
    return None


def _is_the_object(node, alias: str, view_plan: Callable[[str], str | None]) -> bool:
    """Whether the ``SubqueryAlias`` named ``alias`` is the warehouse's table or view of that name (an
    alias of the same name over it, ``FROM t AS t``, is checked again one level down)."""
    (child,) = node.inputs()
    variant = child.to_variant()
    kind = type(variant).__name__
    if kind == "TableScan":
        return str(variant.table_name()) == alias
    if kind == "SubqueryAlias" and str(variant.alias()) == alias:
        return True
    expected = view_plan(alias)
    return expected is not None and child.display_indent() == expected


def _recursive_names(root) -> set[str]:
    """The names of recursive ``WITH`` clauses: a plan scans its own work table by that name."""
    found, pending = set(), [root]
    while pending:
        node = pending.pop()
        variant = node.to_variant()
        if type(variant).__name__ == "SubqueryAlias":
            (child,) = node.inputs()
            if type(child.to_variant()).__name__ == "RecursiveQuery":
                found.add(str(variant.alias()))
        pending.extend(node.inputs())
    return found


def _scan_problem(plan_text: str, names: set[str], recursive: set[str]) -> str | None:
    """Every table the indented plan scans, sub-queries in expressions included (which the tree of inputs
    does not reach), must be a one-part logical name or a computing table function."""
    for table in _SCAN.findall(plan_text):
        if table in names or table in SAFE_TABLE_FUNCTIONS or table in recursive:
            continue
        if table.endswith("()"):
            return f"the table function {table}, which may read outside the warehouse"
        return f"a read of {table}: name the warehouse's tables and views by their one-part logical name"
    return None
