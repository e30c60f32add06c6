"""The bundle's variables and the wheel's settings agree: each setting the bundle passes comes from the
variable its declaration (``config.SETTINGS``) names, every variable is used and says why it is one.

Read from the YAML text, so these run without the Databricks CLI; ``test_bundle.py`` has the CLI judge
the same files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cqrs_orders.config import SETTINGS

ROOT = Path(__file__).parents[2]
BUNDLE = (ROOT / "databricks.yml").read_text(encoding="utf-8")
RESOURCES = {
    path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / "resources").glob("*.yml"))
}
BY_FLAG = {s.flag: s for s in SETTINGS if s.flag}
BY_ENV = {s.env: s for s in SETTINGS}


def variable_blocks(text: str) -> dict[str, str]:
    """Each top-level variable of ``databricks.yml`` with the lines of its definition."""
    section = text.split("\nvariables:\n", 1)[1].split("\ntargets:\n", 1)[0]
    blocks = re.split(r"^  (\w+):\n", section, flags=re.MULTILINE)[1:]
    return dict(zip(blocks[::2], blocks[1::2], strict=True))


VARIABLES = variable_blocks(BUNDLE)


def passed_settings() -> list[tuple[str, str, str]]:
    """(file, setting name, variable) for every setting a resource fills from a variable: a task's
    ``--flag=${var.X}``, a notebook parameter ``name: ${var.X}`` and an app's environment variable."""
    found = []
    for name, text in RESOURCES.items():
        for flag, variable in re.findall(r"(--[a-z-]+)=\$\{var\.(\w+)\}", text):
            if flag in BY_FLAG:
                found.append((name, BY_FLAG[flag].name, variable))
        for parameter, variable in re.findall(r"^\s+(\w+): \$\{var\.(\w+)\}", text, flags=re.MULTILINE):
            flag = "--" + parameter.replace("_", "-")
            if flag in BY_FLAG:
                found.append((name, BY_FLAG[flag].name, variable))
        for env, variable in re.findall(r"- name: (\w+)\n\s+value: \$\{var\.(\w+)\}", text):
            found.append((name, BY_ENV[env].name, variable))
    return found


def test_the_scan_finds_the_settings_the_jobs_and_the_app_pass():
    names = {(file, setting) for file, setting, _ in passed_settings()}
    assert ("projection.job.yml", "max_records_per_batch") in names
    assert ("command_ingest.job.yml", "cosmos_endpoint") in names  # a notebook parameter
    assert ("command_api.app.yml", "cosmos_database") in names  # the app's environment


@pytest.mark.parametrize(("file", "setting", "variable"), passed_settings())
def test_a_setting_the_bundle_passes_comes_from_its_declared_variable(file, setting, variable):
    declared = next(s for s in SETTINGS if s.name == setting).bundle_variable
    assert variable == declared, (
        f"{file} fills {setting} from var.{variable}; config.SETTINGS says {declared}"
    )


def test_every_declared_bundle_variable_exists():
    missing = {s.bundle_variable for s in SETTINGS if s.bundle_variable} - set(VARIABLES)
    assert not missing, f"config.SETTINGS names bundle variables databricks.yml lacks: {missing}"


def test_every_variable_is_used_and_says_why():
    everything = BUNDLE + "".join(RESOURCES.values())
    for name, block in VARIABLES.items():
        assert f"${{var.{name}}}" in everything, f"var.{name} is used nowhere: remove it"
        assert "description:" in block and "#" in block, f"var.{name}: give a description and say why"
