"""Bounded catch-up on the embedded event log: a backlog many times ``CQRS_MAX_RECORDS_PER_BATCH`` is worked
off in micro-batches of at most that many records, memory does not grow with the number of batches, and the
lag monitor sees the backlog shrink from one run of the projection to the next.

(The same on Kafka, through ``maxOffsetsPerTrigger``: ``tests/kafka/test_kafka_catch_up.py``.)
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import write_deltalake

from cqrs_orders.adapters.event_log import SEGMENT_RECORDS, EventLog
from cqrs_orders.config import Settings
from cqrs_orders.errors import ConfigurationError
from cqrs_orders.pipeline.sources import event_log_options

LIMIT, BACKLOG = 100, 1200  # catch_up_support.py's LIMIT and the sum of its APPENDS
MiB = 1024 * 1024


# --- the setting and the source options (no Spark) -------------------------------------------------------
def test_the_limit_is_a_positive_setting_with_a_default(tmp_path):
    assert Settings.from_env(tmp_path, env={}).max_records_per_batch == 100_000
    assert Settings.from_env(tmp_path, env={"CQRS_MAX_RECORDS_PER_BATCH": "250"}).max_records_per_batch == 250
    flag = Settings.from_env(
        tmp_path, env={"CQRS_MAX_RECORDS_PER_BATCH": "250"}, overrides={"CQRS_MAX_RECORDS_PER_BATCH": "300"}
    )
    assert flag.max_records_per_batch == 300  # --max-records-per-batch wins over the environment
    for bad in ("0", "-5", "1e4", "many"):
        with pytest.raises(ConfigurationError, match="CQRS_MAX_RECORDS_PER_BATCH"):
            Settings.from_env(tmp_path, env={"CQRS_MAX_RECORDS_PER_BATCH": bad})


def test_the_event_log_is_read_in_whole_files_that_hold_the_limit_at_most(tmp_path):
    def options(limit: int) -> dict:
        env = {"CQRS_MAX_RECORDS_PER_BATCH": str(limit)}
        return event_log_options(Settings.from_env(tmp_path / "warehouse", env=env))

    EventLog(tmp_path / "warehouse" / "event_log").append([("a", "1")])
    assert options(100_000) == {"maxFilesPerTrigger": str(100_000 // SEGMENT_RECORDS)}
    assert options(2 * SEGMENT_RECORDS + SEGMENT_RECORDS // 2) == {"maxFilesPerTrigger": "2"}  # rounds down
    assert options(SEGMENT_RECORDS) == {"maxFilesPerTrigger": "1"}
    with pytest.raises(ConfigurationError, match=f"set it to {SEGMENT_RECORDS} or more"):
        options(SEGMENT_RECORDS - 1)  # one file may hold more: no number of files keeps that limit


def test_a_log_from_before_segments_is_read_unbounded_with_a_warning(tmp_path, caplog):
    path = tmp_path / "warehouse" / "event_log"
    write_deltalake(str(path), EventLog(path).read(), mode="append")  # no segment column
    with caplog.at_level(logging.WARNING, logger="cqrs_orders.pipeline.sources"):
        assert event_log_options(Settings.from_env(tmp_path / "warehouse", env={})) == {}
    assert "not bounded to 100000 records" in caplog.text


# --- the catch-up (Spark, in a process of its own: catch_up_support.py) ------------------------------------
SUPPORT = Path(__file__).with_name("catch_up_support.py")


def test_a_backlog_is_worked_off_in_bounded_batches_with_flat_memory_and_shrinking_lag(
    spark_process, tmp_path
):
    done = subprocess.run(
        [sys.executable, str(SUPPORT), str(tmp_path / "warehouse")],
        env=spark_process, capture_output=True, text=True, timeout=800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    seen, files, rest = figures["seen"], figures["files"], figures["rest"]
    first, second = seen[: figures["first"]], seen[figures["first"] : figures["first"] + figures["second"]]
    before, after_first, after_second, after_all = figures["lag"]
    print(json.dumps({k: v for k, v in figures.items() if k != "seen"}), *map(json.dumps, seen), sep="\n")

    # Bounded: every batch within the limit, every record read once, in as many batches as files allow.
    assert before == BACKLOG
    assert all(b["rows"] <= LIMIT for b in seen), [b["rows"] for b in seen]
    assert sum(b["rows"] for b in seen) == BACKLOG
    files_per_batch = LIMIT // SEGMENT_RECORDS
    assert len(seen) == math.ceil(files / files_per_batch) >= math.ceil(BACKLOG / LIMIT)
    # A run stops between batches once it saw two; on a loaded machine a batch can start before the stop
    # is seen, so a run may read a third: what matters is that the lag falls by exactly what each run read.
    assert len(first) >= 2 and len(second) >= 2 and len(seen) > len(first) + len(second)

    # The lag monitor sees the backlog shrink from run to run, by what each run read.
    assert BACKLOG > after_first > after_second > after_all == 0
    assert after_first == BACKLOG - sum(b["rows"] for b in first)
    assert after_second == after_first - sum(b["rows"] for b in second)
    assert rest["projection_input_rows"] == after_second and rest["silver_orders"] == BACKLOG

    # Memory. What a batch holds is its own rows (validated, checkpointed, freed when it ends): at its
    # largest a fraction of what one batch of the whole backlog would hold, and nothing is left once the
    # batches are done. What stays referenced after a batch (the heap after a full collection) does not
    # grow with the number of batches within a run; a leak of the batches' rows or plans would grow it.
    # (It does grow at each new query and `lag` run, as caches and code meet new tables and plans for the
    # first time; so it is compared within the last run, `--once`, of several batches.)
    assert figures["peak_held"] < figures["unbounded_held"] / 3, (
        figures["peak_held"],
        figures["unbounded_held"],
    )
    assert figures["held_after"] == 0
    # Medians: a measure can land while the next batch of `--once` is under way, with its garbage in it; a
    # leak moves every later measure.
    heap = [b["heap"] for b in seen[len(first) + len(second) :]]
    halves = heap[: len(heap) // 2], heap[len(heap) // 2 :]
    assert statistics.median(halves[1]) - statistics.median(halves[0]) < 64 * MiB, [h // MiB for h in heap]
    rss = [b["rss"] for b in seen]
    assert max(rss) - min(rss) < 32 * MiB, [r // MiB for r in rss]  # the Python driver holds no rows


def test_the_backlog_of_a_log_read_out_of_order_counts_what_was_read(spark):
    """A new stream on a compacted log reads its files as written, compacted ones last: after a bounded
    batch a partition may have offsets 5 and 6 ingested but not 0 to 4. Its backlog is what is missing."""
    from cqrs_orders.ops import measures

    bronze = spark.createDataFrame([(0, 5), (0, 6), (1, 0)], "partition int, offset long")
    quarantine = spark.createDataFrame([(1, 1)], "partition int, offset long")
    bronze.createOrReplaceTempView("bronze_events")  # the monitor's SQL reads the logical names
    quarantine.createOrReplaceTempView("bronze_quarantine")
    spark.range(9).selectExpr("'' AS body").createOrReplaceTempView(measures.EVENT_LOG)  # offsets 0-6, 0-1
    (counted,) = spark.sql(measures.INGESTED_POSITIONS).collect()
    (records,) = spark.sql(measures.LOG_RECORDS).collect()
    highest = {r.partition: r.next_offset for r in spark.sql(measures.INGESTED_NEXT_OFFSETS).collect()}
    assert (counted.ingested, highest) == (4, {0: 7, 1: 2})
    assert records.records - counted.ingested == 5  # offsets 0 to 4 of partition 0
