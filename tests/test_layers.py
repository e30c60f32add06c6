"""Imports point down the layers, and the domain and the application know neither Spark nor Azure.

Read from the source (every ``import``, at module level or inside a function), so the test is fast and
names the line that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "cqrs_orders"

#: Bottom to top. A module may import from its own layer and the layers below it, never above.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(names.split())
    for names in (
        "__init__ errors exit_codes",
        "config envelope jars",
        "envelope_schema spark domain",
        "application",
        "adapters",
        "delta_io",
        "query",
        "pipeline",
        "ops",
        "report",
        "wiring cli http client",  # the entry points and the composition root beside them
    )
)
LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}

#: Third-party packages the rules (domain, application, envelope, errors) must not import: they hold the
#: rules, and the adapters the tools.
INFRASTRUCTURE = ("pyspark", "delta", "azure", "databricks", "confluent_kafka", "kafka", "deltalake")
PURE = ("domain", "application", "envelope", "errors")


def _top(path: Path) -> str:
    """The unit a module belongs to: its subpackage, or the module itself at the package's top."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path):
    """(line, module imported) for every import in ``path``; ``from cqrs_orders import x`` yields x."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "cqrs_orders":
                for alias in node.names:
                    yield node.lineno, f"cqrs_orders.{alias.name}"
            else:
                yield node.lineno, node.module


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_unit_of_the_package_has_a_layer():
    units = {_top(path) for path in MODULES}
    assert units - set(LAYER_OF) == set(), "place the new module in LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    here = _top(path)
    upward = [
        f"line {line}: {here} imports {module} (layer {LAYER_OF[target]} > {LAYER_OF[here]})"
        for line, module in _imports(path)
        if module.startswith("cqrs_orders.")
        and (target := module.split(".")[1]) in LAYER_OF
        and LAYER_OF[target] > LAYER_OF[here]
    ]
    assert upward == []


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _top(p) in PURE], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_the_rules_import_no_infrastructure(path):
    heavy = [
        f"line {line}: {module}" for line, module in _imports(path) if module.split(".")[0] in INFRASTRUCTURE
    ]
    assert heavy == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The rule can fail: an import from a higher layer is found wherever it is written."""
    module = tmp_path / "probe.py"
    module.write_text(
        "def f():\n    from cqrs_orders.pipeline import silver\n    from cqrs_orders import cli\n"
    )
    found = [name for _, name in _imports(module)]
    assert found == ["cqrs_orders.pipeline", "cqrs_orders.cli"]
    assert LAYER_OF["pipeline"] > LAYER_OF["application"] and LAYER_OF["cli"] > LAYER_OF["pipeline"]
