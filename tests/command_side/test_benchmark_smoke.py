"""The command benchmark script runs end to end at a tiny size and prints its one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "commands.py"


def test_commands_benchmark_prints_one_json_line():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--commands", "12"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    figures = json.loads(line)
    assert figures["commands"] == 12 and figures["sqlite"]["journal_mode"] == "WAL"
    for side in ("cqrs_orders", "eventsourcing"):
        for run in ("single", "threads_4"):
            assert set(figures[side][run]) == {"commands", "seconds", "commands_per_s", "p50_ms", "p99_ms"}
            assert figures[side][run]["commands"] == 12 and figures[side][run]["commands_per_s"] > 0
    assert set(figures["ratio_commands_per_s"]) == {"single", "threads_4"}
