"""The command benchmark script runs end to end at a tiny size and prints its one JSON line, with every run
(one thread, 4 and 16 threads, the submit --file import) on both sides and every ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "commands.py"
FIGURES = {"commands", "seconds", "commands_per_s", "p50_ms", "p99_ms"}


def test_commands_benchmark_prints_one_json_line():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--commands", "12", "--file-commands", "31"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    figures = json.loads(line)
    assert figures["commands"] == 12 and figures["file_commands"] == 31
    assert figures["sqlite"] == {"journal_mode": "WAL", "synchronous": "FULL"}
    for run in ("single", "threads_4", "threads_16"):
        assert set(figures["eventsourcing"][run]) == FIGURES
        assert set(figures["cqrs_orders"][run]) == FIGURES | {"commands_per_group"}
        for side in ("cqrs_orders", "eventsourcing"):
            assert figures[side][run]["commands"] == 12 and figures[side][run]["commands_per_s"] > 0
    assert figures["cqrs_orders"]["single"]["commands_per_group"] == 1.0  # a lone caller is its own group
    assert figures["cqrs_orders"]["submit_file"]["commands"] == 31
    ratios = figures["ratio_commands_per_s"]
    assert set(ratios) == {"single", "threads_4", "threads_16", "submit_file_vs_single"}
    assert all(ratio > 0 for ratio in ratios.values())
