"""Load the bundle the way the Databricks CLI does, without a workspace: databricks.yml plus its includes,
merged per target (target overrides on top), with ``${...}`` references substituted.

Variables get their default, the target's value or a value given like ``--var``; lookups (``lookup:``) and
workspace facts (current user) get stand-ins, since resolving them needs a workspace.
"""

from __future__ import annotations

import copy
import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = Path(__file__).with_name("databricks-bundle.schema.json")
#: What `databricks bundle deploy --var ...` would pass for the variables that have no default.
DEPLOY_VARS = {"eventhubs_namespace": "ehns-orders-test", "cosmos_account": "cosmos-orders-test"}
PROD_VARS = {**DEPLOY_VARS, "service_principal": "11111111-2222-3333-4444-555555555555"}
CURRENT_USER = {"short_name": "jane_doe", "userName": "jane.doe@example.com"}
LOOKUP_STAND_IN = "looked-up-id-0000"
_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.\-\[\]]+)\}")


class BundleError(ValueError):
    """The configuration would not deploy: the CLI would refuse it with this message."""


@dataclass
class Bundle:
    config: dict  # the merged root configuration (databricks.yml + includes), targets still inside
    sources: dict[tuple[str, str], Path]  # (resource type, key) -> the YAML file that defines it

    def targets(self) -> list[str]:
        return list(self.config.get("targets", {}))

    def merged(self, target: str) -> dict:
        """The target's configuration with its overrides applied, references still unresolved."""
        config = copy.deepcopy(self.config)
        targets = config.pop("targets", {})
        if target not in targets:
            raise BundleError(f"unknown target {target!r}")
        overrides = copy.deepcopy(targets[target] or {})
        for name, value in (overrides.pop("variables", None) or {}).items():
            if name not in config.get("variables", {}):
                raise BundleError(f"target {target} sets undeclared variable {name!r}")
            config["variables"][name]["default"] = value["default"] if isinstance(value, dict) else value
        for key in ("mode", "default"):  # consumed by the CLI, not part of the deployed configuration
            overrides.pop(key, None)
        _deep_merge(config, overrides)
        config.setdefault("bundle", {})["target"] = target
        return config

    def resolved(self, target: str, variables: dict | None = None) -> dict:
        """The target's configuration with every ``${...}`` reference substituted."""
        config = self.merged(target)
        values = {}
        for name, spec in config.get("variables", {}).items():
            if variables and name in variables:
                values[name] = variables[name]
            elif "default" in spec:
                values[name] = spec["default"]
            elif "lookup" in spec:
                values[name] = LOOKUP_STAND_IN
            else:
                raise BundleError(f'no value assigned to required variable {name}; pass --var="{name}=..."')
        context = {"var": values, "bundle": config["bundle"], "workspace": {"current_user": CURRENT_USER}}
        context["resources"] = config.get("resources", {})
        for _ in range(5):  # references may point at values that hold references themselves
            config = _substitute(config, context)
            context = {
                **context,
                "var": _substitute(values, context),
                "resources": config.get("resources", {}),
            }
        config["bundle"].pop("target")  # the CLI's own bookkeeping, not a schema field
        left = _REFERENCE.search(json.dumps(config))
        if left:
            raise BundleError(f"reference {left.group(0)} does not resolve")
        return config


def load_bundle(root: Path = ROOT) -> Bundle:
    root_file = root / "databricks.yml"
    config = yaml.safe_load(root_file.read_text())
    sources = {}
    for pattern in config.get("include", []):
        for path in sorted(glob.glob(str(root / pattern))):
            included = yaml.safe_load(Path(path).read_text()) or {}
            for resource_type, resources in (included.get("resources") or {}).items():
                for key in resources:
                    if (resource_type, key) in sources:
                        raise BundleError(f"resource {resource_type}.{key} is defined twice")
                    sources[(resource_type, key)] = Path(path)
            _deep_merge(config, included)
    for resource_type, resources in (config.get("resources") or {}).items():
        for key in resources:
            sources.setdefault((resource_type, key), root_file)
    return Bundle(config, sources)


def bundle_json_schema() -> dict:
    """The official bundle JSON schema, its ``\\p{L}``/``\\p{N}`` classes rewritten for Python's ``re``."""
    return _rewrite_patterns(json.loads(SCHEMA_FILE.read_text()))


def python_pattern(pattern: str) -> str:
    """``\\p{L}`` (a letter) and ``\\p{N}`` (a digit) as Python ``re`` classes, inside ``[...]`` too."""
    pattern = pattern.replace(r"[\p{L}\p{N}]", r"[^\W_]")  # letter or digit: word characters minus '_'
    return pattern.replace(r"\p{L}", r"[^\W\d_]").replace(r"\p{N}", r"\d")


def _rewrite_patterns(node):
    if isinstance(node, dict):
        return {
            key: python_pattern(value)
            if key == "pattern" and isinstance(value, str)
            else _rewrite_patterns(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_patterns(item) for item in node]
    return node


def _deep_merge(base: dict, overlay: dict) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _lookup(context: dict, path: str):
    node = context
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            if path.startswith("resources.") and path.endswith((".id", ".url")):
                return f"<{path} after deploy>"
            raise BundleError(f"reference ${{{path}}} does not resolve")
        node = node[part]
    return node


def _substitute(node, context):
    if isinstance(node, dict):
        return {key: _substitute(value, context) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, context) for item in node]
    if isinstance(node, str):
        whole = _REFERENCE.fullmatch(node)
        if whole:  # a whole-value reference keeps the value's type (lists of complex variables)
            return _lookup(context, whole.group(1))
        return _REFERENCE.sub(lambda match: str(_lookup(context, match.group(1))), node)
    return node


@pytest.fixture(scope="session")
def bundle() -> Bundle:
    return load_bundle()


@pytest.fixture(scope="session")
def configs(bundle) -> dict[str, dict]:
    """Each target's resolved configuration, with the variables a deploy must pass (``--var``)."""
    return {
        target: bundle.resolved(target, PROD_VARS if target == "prod" else DEPLOY_VARS)
        for target in bundle.targets()
    }


@pytest.fixture(scope="session")
def tools() -> SimpleNamespace:
    """This module's helpers, for tests (test modules cannot import a conftest under importlib mode)."""
    return SimpleNamespace(
        BundleError=BundleError,
        load_bundle=load_bundle,
        python_pattern=python_pattern,
        DEPLOY_VARS=DEPLOY_VARS,
        ROOT=ROOT,
    )


@pytest.fixture(scope="session")
def json_schema() -> dict:
    return bundle_json_schema()
