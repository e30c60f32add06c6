"""Only ``config.py`` reads the environment: every other module takes its values from ``Settings`` (or a
function of ``config``), so each setting is declared, validated and documented in one place.

Read from the source (every ``os.environ`` / ``os.getenv`` / ``from os import environ``), so the test is fast
and names the line that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "cqrs_orders"
ALLOWED = {PACKAGE / "config.py"}
READERS = {"environ", "getenv", "environb", "getenvb"}


def environment_reads(source: str) -> list[int]:
    """The lines of ``source`` that touch the process environment through :mod:`os`."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if _reads(node)]


def _reads(node: ast.AST) -> bool:
    """``os.environ`` / ``os.getenv`` (an attribute of the name ``os``), or ``from os import environ``."""
    if isinstance(node, ast.Attribute):
        return node.attr in READERS and isinstance(node.value, ast.Name) and node.value.id == "os"
    if isinstance(node, ast.ImportFrom):
        return node.module == "os" and any(alias.name in READERS for alias in node.names)
    return False


def test_the_scan_sees_every_way_of_reading_the_environment():
    source = "import os\nfrom os import environ\na = os.environ['X']\nb = os.getenv('Y')\nc = os.getuid()\n"
    assert environment_reads(source) == [2, 3, 4]


def test_no_module_but_config_reads_the_environment():
    offenders = [
        f"{path.relative_to(PACKAGE.parents[1])}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in ALLOWED
        for line in environment_reads(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, (
        "read the environment only in src/cqrs_orders/config.py (declare a Setting and take it from "
        f"Settings): {', '.join(offenders)}"
    )
