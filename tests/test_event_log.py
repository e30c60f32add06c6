"""The embedded event log: Kafka-like records, dense offsets per partition, safe concurrent appenders."""

from __future__ import annotations

import json
import subprocess
import sys

from deltalake import DeltaTable

from cqrs_orders.adapters import event_log
from cqrs_orders.adapters.event_log import EventLog, partition_key_of

APPEND_MANY = """
import sys
from cqrs_orders.adapters.event_log import EventLog
path, worker = sys.argv[1], sys.argv[2]
log = EventLog(path)
for batch in range(5):
    log.append([(f"agg-{worker}-{i}", f'{{"n": {batch}}}') for i in range(4)])
"""


def test_records_keep_order_and_get_dense_offsets(tmp_path):
    log = EventLog(tmp_path / "event_log", partitions=2)
    first = log.append([("a", "1"), ("a", "2"), ("b", "3")])
    second = log.append([("a", "4")])
    positions = first + second
    assert len({p for p, _ in [positions[0], positions[1], positions[3]]}) == 1  # one key, one partition
    per_partition: dict[int, list[int]] = {}
    for partition, offset in positions:
        per_partition.setdefault(partition, []).append(offset)
    assert all(offsets == list(range(len(offsets))) for offsets in per_partition.values())
    rows = log.read().to_pylist()
    assert [r["body"] for r in rows if r["partition_key"] == "a"] == ["1", "2", "4"]
    assert {r["partition_key"] for r in rows} == {"a", "b"}
    assert sum(log.end_offsets().values()) == 4


def test_bodies_are_stored_byte_for_byte(tmp_path):
    log = EventLog(tmp_path / "event_log")
    bodies = ['{"eventId": 1,  "x": "é"}', "not json at all", "", "  padded  "]
    log.append([(partition_key_of(b), b) for b in bodies])
    assert sorted(r["body"] for r in log.read().to_pylist()) == sorted(bodies)


def test_partition_key_is_the_aggregate_id_when_there_is_one():
    assert partition_key_of(json.dumps({"aggregateId": "order-1"})) == "order-1"
    assert partition_key_of("[1, 2]") is None
    assert partition_key_of("{broken") is None


def test_concurrent_processes_never_share_an_offset(tmp_path):
    path = str(tmp_path / "event_log")
    workers = [subprocess.Popen([sys.executable, "-c", APPEND_MANY, path, str(w)]) for w in range(3)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    rows = EventLog(path).read().to_pylist()
    assert len(rows) == 3 * 5 * 4
    positions = [(r["partition"], r["offset"]) for r in rows]
    assert len(set(positions)) == len(positions)
    for partition in {p for p, _ in positions}:
        offsets = sorted(o for p, o in positions if p == partition)
        assert offsets == list(range(len(offsets)))


def test_empty_log_reads_empty(tmp_path):
    log = EventLog(tmp_path / "event_log")
    assert log.read().num_rows == 0 and log.end_offsets() == {}
    assert log.append([]) == []


def test_the_log_compacts_its_small_files_and_keeps_every_record(tmp_path, monkeypatch):
    monkeypatch.setattr(event_log, "COMPACT_EVERY_COMMITS", 3)
    log = EventLog(tmp_path / "event_log", partitions=1)
    for n in range(7):
        log.append([("a", str(n))])
    live = DeltaTable(str(tmp_path / "event_log")).file_uris()
    assert len(live) == 2  # seven appends: six compacted into one file, the last one on its own
    assert [r["body"] for r in log.read().to_pylist()] == [str(n) for n in range(7)]
    assert log.end_offsets() == {0: 7}


def test_vacuum_keeps_what_compactions_replaced_until_it_is_seven_days_old(tmp_path, monkeypatch):
    monkeypatch.setattr(event_log, "COMPACT_EVERY_COMMITS", 3)
    log = EventLog(tmp_path / "event_log", partitions=1)
    for n in range(4):
        log.append([("a", str(n))])
    on_disk = sorted((tmp_path / "event_log").rglob("*.parquet"))  # in segment=N/ folders
    assert len(on_disk) == 5  # four appends and one compaction of three of them

    assert log.vacuum() == 0  # the replaced files are minutes old: a lagging stream may still read them
    assert sorted((tmp_path / "event_log").rglob("*.parquet")) == on_disk
    assert [r["body"] for r in log.read().to_pylist()] == ["0", "1", "2", "3"]
    assert EventLog(tmp_path / "empty").vacuum() == 0  # no log yet: nothing to do


def _records_per_live_file(path) -> list[int]:
    import pyarrow as pa

    return pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).column("num_records").to_pylist()


def test_no_file_holds_more_than_a_segment_of_records_before_or_after_compaction(tmp_path, monkeypatch):
    """What lets the projection bound its micro-batches: Delta's stream admits whole files, so a file must
    never hold more than SEGMENT_RECORDS records, whatever the appends' sizes and after compactions."""
    monkeypatch.setattr(event_log, "SEGMENT_RECORDS", 10)
    monkeypatch.setattr(event_log, "COMPACT_EVERY_COMMITS", 4)
    log = EventLog(tmp_path / "event_log", partitions=3)
    sizes = [1, 3, 25, 7, 2, 9, 40, 1, 1, 4, 6]  # trickles and appends of several segments; 2 compactions
    for n, size in enumerate(sizes):
        log.append([(f"agg-{n}-{i}", f"{n}.{i}") for i in range(size)])
        per_file = _records_per_live_file(tmp_path / "event_log")
        assert max(per_file) <= 10 and sum(per_file) == sum(sizes[: n + 1])
    assert len(per_file) == -(-sum(sizes) // 10)  # compacted: one file per segment (the last one filling)
    assert event_log.records_per_file(tmp_path / "event_log") == 10
    assert sorted(r["body"] for r in log.read().to_pylist()) == sorted(
        f"{n}.{i}" for n, size in enumerate(sizes) for i in range(size)
    )


def test_a_log_from_before_segments_is_appended_to_as_before_and_has_no_bound(tmp_path):
    from deltalake import write_deltalake

    path = tmp_path / "event_log"
    old = EventLog(path).read().schema.empty_table()  # the record columns only, no segment
    write_deltalake(str(path), old, mode="append")
    assert event_log.records_per_file(path) is None and event_log.records_per_file(tmp_path / "none") is None
    log = EventLog(path, partitions=1)
    assert log.append([("a", "1"), ("a", "2")]) == [(0, 0), (0, 1)]
    assert EventLog(path, partitions=1).append([("a", "3")]) == [(0, 2)]
    assert DeltaTable(str(path)).metadata().partition_columns == []
