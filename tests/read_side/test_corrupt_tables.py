"""A damaged Delta log is named in one line (exit 2) before Spark meets it, not ~200 lines of Java stack."""

from __future__ import annotations

from pathlib import Path

import pytest


def _truncate_last_commit(table: Path) -> Path:
    commit = sorted((table / "_delta_log").glob("*.json"))[-1]
    text = commit.read_text()
    commit.write_text(text[: len(text) // 2])
    return commit


@pytest.mark.parametrize("command", [("sql", "SELECT count(*) FROM silver_orders"), ("project", "--once")])
def test_a_truncated_commit_of_a_silver_table_is_named_with_what_to_do(
    spark, cli, settings, write_warehouse, command
):
    write_warehouse(settings, ("silver_orders", "silver_customers"))
    silver = Path(settings.table("silver_orders").path)
    commit = _truncate_last_commit(silver)

    result = cli(*command)

    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(commit) in lines[0] and "silver_orders" in lines[0], lines[0]
    assert "Restore that file from a backup" in lines[0] and "cqrs-orders rebuild" in lines[0]
