"""Each benchmark script runs end to end at a tiny size and prints one JSON line of sane figures.

They run as subprocesses (their own Spark), exactly as a person would run them; sizes are tiny so the
figures mean nothing here, only that the scripts work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_benchmark(script: str, *args: str, timeout: float) -> dict:
    finished = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    lines = finished.stdout.strip().splitlines()
    assert len(lines) == 1, finished.stdout  # exactly one JSON line on stdout; progress went to stderr
    assert finished.stderr.strip(), "progress is shown on stderr"
    return json.loads(lines[0])


@pytest.mark.timeout(600)
def test_projection_benchmark_prints_every_figure(spark_process):
    figures = run_benchmark(
        "projection.py",
        *("--events", "400", "--aggregates", "200", "--merge-batch", "50"),
        *("--small-rows", "200", "--large-rows", "2000"),
        timeout=600,
    )

    assert figures["events"] == 400 and figures["rounds"] == 2
    assert figures["naive_merge_batches"] == 2  # one round of versions per micro-batch
    assert figures["ours_silver_rows"] == 200 and figures["naive_rows"] == 200
    assert figures["ours_bronze_only_rows"] == 400  # its own warehouse read the whole log
    for name in ("ours", "ours_bronze_only", "floor", "naive_merge"):
        assert figures[f"{name}_seconds"] > 0
        # Rates are printed to 0.1 event/s: at these tiny sizes that rounding is itself ~1%.
        assert figures[f"{name}_events_per_second"] == pytest.approx(
            400 / figures[f"{name}_seconds"], rel=0.01, abs=0.06
        )
    assert figures["ours_cold_seconds"] > 0 and figures["floor_cold_seconds"] > 0  # the untimed warm-ups
    assert figures["ratio_ours_to_floor_cold"] == pytest.approx(
        figures["ours_cold_seconds"] / figures["floor_cold_seconds"], rel=0.02, abs=0.006
    )
    for name in ("ours", "ours_bronze_only"):
        assert figures[f"ratio_{name}_to_floor"] == pytest.approx(
            figures[f"{name}_seconds"] / figures["floor_seconds"], rel=0.02, abs=0.006
        )
    for step in ("merge_recent", "merge_spread", "silver_batch_recent", "silver_batch_spread"):
        small, large = figures[f"{step}_small_seconds"], figures[f"{step}_large_seconds"]
        assert small > 0 and large > 0
        assert figures[f"ratio_{step}_large_to_small"] == pytest.approx(large / small, rel=0.05, abs=0.006)
    assert figures["ratio_ours_to_naive"] == pytest.approx(
        figures["naive_merge_seconds"] / figures["ours_seconds"],
        rel=0.02,
        abs=0.006,  # printed to 0.01
    )
    for aim in ("ours_within_8x_of_floor", "ours_at_least_as_fast_as_naive"):
        assert isinstance(figures[aim], bool)
    assert isinstance(figures["recent_merge_large_within_1_5x_of_small"], bool)


@pytest.mark.timeout(600)
def test_freshness_benchmark_sees_every_command_in_silver(spark_process):
    figures = run_benchmark(
        "freshness.py", "--rate", "5", "--seconds", "10", "--warm-up-seconds", "2", timeout=600
    )

    assert figures["commands"] == 50 and figures["warm_up_seconds"] == 2  # the warm-up's 10 not counted
    for side in ("", "floor_"):  # ours, and the bare stream beside it in the same run
        assert figures[f"{side}visible"] == 50 and figures[f"{side}not_visible"] == 0
        p50, p99, top = (figures[f"{side}latency_{p}_seconds"] for p in ("p50", "p99", "max"))
        assert 0 < p50 <= p99 <= top
    assert figures["ratio_p99_ours_to_floor"] == pytest.approx(
        figures["latency_p99_seconds"] / figures["floor_latency_p99_seconds"], rel=0.02
    )
    assert isinstance(figures["ours_p99_within_1_5x_of_floor"], bool)
    assert 4 <= figures["sustained_rate_per_second"] <= 5.5
    assert figures["median_batch_ms"] > 0
    assert set(figures["median_batch_ms_by_query"]) == {"projection"}  # one query: bus -> silver + bronze


@pytest.mark.timeout(600)
def test_maintenance_benchmark_merges_before_and_after_clustering(spark_process):
    figures = run_benchmark("maintenance.py", "--rows", "2000", "--batch", "50", "--files", "4", timeout=600)

    assert figures["rows"] == 2000 and figures["files_scattered"] == 4
    assert figures["merge_scattered_files_rewritten"] == 4  # every file spans the batch's key range
    assert 1 <= figures["merge_clustered_files_rewritten"] <= figures["files_clustered"]
    assert figures["maintain_seconds"] > 0
    assert figures["ratio_scattered_to_clustered"] == pytest.approx(
        figures["merge_scattered_seconds"] / figures["merge_clustered_seconds"], rel=0.05
    )


@pytest.mark.timeout(600)
def test_api_benchmark_compares_the_api_with_the_handler_and_submit():
    figures = run_benchmark("api.py", "--commands", "48", "--clients", "4", "--repeat", "2", timeout=600)

    assert figures["commands"] == 48 and figures["clients"] == 4 and figures["rounds"] == 2
    for run in ("handler_1", "handler_4", "api_1", "api_4"):
        assert figures[run]["commands"] == 48
        assert 0 < figures[run]["p50_ms"] <= figures[run]["p99_ms"]
        assert figures[run]["commands_per_s"] == pytest.approx(48 / figures[run]["seconds"], rel=0.01)
        assert len(figures[run]["runs_commands_per_s"]) == 2
        assert figures[run]["commands_per_s"] in figures[run]["runs_commands_per_s"]
    assert figures["submit_cli"]["commands"] == 49  # its file registers the customer too
    assert figures["ratio_api_to_handler"] == pytest.approx(
        figures["api_4"]["commands_per_s"] / figures["handler_4"]["commands_per_s"], rel=0.01
    )
    assert figures["api_at_least_80pct_of_handler"] == (figures["ratio_api_to_handler"] >= 0.8)


@pytest.mark.timeout(900)
def test_reads_benchmark_times_each_read_command_beside_spark(spark_process, tmp_path):
    warehouse = tmp_path / "reads-warehouse"
    figures = run_benchmark(
        "reads.py", "--orders", "200", "--repeat", "1", "--warehouse", str(warehouse), timeout=900
    )

    assert figures["orders"] == 200 and figures["rounds"] == 1
    assert (warehouse / "silver_orders" / "_delta_log").is_dir()  # kept for the next run to reuse
    assert (warehouse / "bronze_events" / "_delta_log").is_dir() and (warehouse / "event_log").is_dir()
    commands = ("sql", "report", "lag", "quarantine")
    for name in ("version", *commands, *(f"{command}_spark" for command in commands)):
        assert figures[f"{name}_seconds"] > 0, name
    for command in commands:
        for ratio, (top, bottom) in {
            f"ratio_{command}_spark_to_new": (f"{command}_spark", command),
            f"ratio_{command}_new_to_version": (command, "version"),
        }.items():
            assert figures[ratio] == pytest.approx(
                figures[f"{top}_seconds"] / figures[f"{bottom}_seconds"], rel=0.02, abs=0.006
            ), ratio
    for command in ("sql", "lag"):
        for aim in (f"{command}_at_least_10x_faster_than_spark", f"{command}_within_3x_of_version"):
            assert isinstance(figures[aim], bool)


@pytest.mark.timeout(600)
def test_rebuild_benchmark_reads_through_every_phase(spark_process):
    figures = run_benchmark(
        "rebuild.py", *("--events", "400", "--aggregates", "200", "--idle-seconds", "1"), timeout=600
    )

    assert figures["events"] == 600 and figures["silver_orders_rows"] == 200  # one more round: 200 events
    for phase in ("idle", "catch_up", "rebuild"):
        reads = figures[f"reads_{phase}"]
        assert reads["reads"] > 0 and reads["not_200"] == 0
        assert 0 < reads["p50_ms"] <= reads["p99_ms"] <= reads["max_ms"]
    assert figures["ratio_rebuild_to_project"] == pytest.approx(
        figures["rebuild_seconds"] / figures["project_seconds"], rel=0.05, abs=0.006
    )
    for against in ("idle", "catch_up"):
        assert figures[f"ratio_p99_rebuild_to_{against}"] == pytest.approx(
            figures["reads_rebuild"]["p99_ms"] / figures[f"reads_{against}"]["p99_ms"], rel=0.02, abs=0.006
        )
