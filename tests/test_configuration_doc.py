"""docs/configuration.md is generated from the settings' declaration, so it cannot drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cqrs_orders.config import DOC_COMMAND, SETTINGS, configuration_doc

DOC = Path(__file__).parents[1] / "docs" / "configuration.md"


def test_the_configuration_doc_is_the_generated_one():
    assert DOC.read_text(encoding="utf-8") == configuration_doc(), (
        f"docs/configuration.md is out of date with config.SETTINGS: regenerate it with `{DOC_COMMAND}`"
    )


def test_the_doc_names_every_setting_its_option_and_its_bundle_variable():
    doc = configuration_doc()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in doc
        for named in (setting.flag, setting.bundle_variable):
            assert named is None or f"`{named}`" in doc


def test_the_module_prints_the_doc():
    printed = subprocess.run(
        [sys.executable, "-m", "cqrs_orders.config"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert printed == configuration_doc()
