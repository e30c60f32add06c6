"""Projection throughput: our bronze+silver pipeline against a floor and the seed note's naive MERGE.

One run, one input: N order events over M orders (each order gets versions 1..k in turn, one *round* of
versions per event-log append) in a temporary warehouse. Measured, each as events per second:

1. ours: ``cqrs_orders.pipeline.runner.run_once`` (bronze, quarantine, silver, gold; availableNow),
   and our bronze half alone (validate, append bronze and quarantine; a query of this script's own) on a
   second warehouse reading the same log: the part of ours that does what the floor does, plus the checks;
2. floor: the same records read from the log and appended to a Delta table, no parsing, no MERGE;
3. naive: the seed note's ``foreachBatch`` MERGE (``whenMatchedUpdateAll``/``whenNotMatchedInsertAll`` on
   the order id), fed one round per micro-batch so no batch holds two events of one order (it fails then);
4. MERGE growth: a batch of ``--merge-batch`` order updates merged by our silver MERGE into silver_orders
   pre-filled with ``--small-rows`` and with ``--large-rows`` orders (``merge_recent_*``, ``merge_spread_*``);
   then a second such batch through our whole silver micro-batch (``silver_batch_*``;
   gold is refreshed off the batch path, not timed here). Two patterns: the newest orders (``recent``: what
   a live system mostly updates) and orders spread evenly over the key space (``spread``: the worst case).

Ours and the floor are timed warm, each after one untimed pass over the same input (the floor's on a table
of its own, ours on a warehouse of its own), as a long-running stream runs; those first passes are printed
as ``*_cold_seconds`` with their ratio. The naive MERGE and the bronze half run after ours, warm.

5. with ``--auto-cdc``, the AUTO CDC peer (``benchmarks/auto_cdc.py``): the same event log through an
   open-source declarative pipeline (``pyspark.pipelines``' ``create_auto_cdc_flow`` under the
   ``spark-pipelines`` CLI, Spark 4.3, Delta) in its own environment, timed once, cold (each CLI run is a
   new JVM); its tables checked against ours row for row; then both run on a small adversarial log
   (duplicates, versions out of order, a version gap, malformed records) and checked again.
   ``auto_cdc_ratio_to_ours`` is a throughput ratio (above 1.0 the peer is faster), against our warm pass;
   ``auto_cdc_ratio_to_ours_cold`` against our first pass.

Prints ONE JSON line with every figure, the time ratios ours/floor and large/small (1.0 means as fast, 2.0
twice as slow) and ``ratio_ours_to_naive`` (a throughput ratio: above 1.0, ours is faster). The aims:
ours/floor <= 8, ours/naive >= 1.0, recent MERGE large/small <= 1.5. Progress goes to stderr.
Usage: ``python benchmarks/projection.py --events 20000`` (add ``--auto-cdc`` for the peer).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from pathlib import Path

from auto_cdc import COMPARED_TABLES, DEFAULT_ENV, compare, peer_table, run_peer, table_protocol

from cqrs_orders.adapters.event_log import SEGMENT_RECORDS, EventLog
from cqrs_orders.config import Settings
from cqrs_orders.delta_io import table
from cqrs_orders.envelope import LineItem, OrderState, OrderStatus, new_event

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEFAULT_PEER_PYTHON = DEFAULT_ENV / "bin" / "python"
_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# --- the input -------------------------------------------------------------------------------------------
def order_event(order: int, version: int) -> tuple[str, str]:
    """(partition key, body) of version ``version`` of order ``order``: created, items added, updated."""
    order_id = f"order-{order:09d}"
    at = T0 + timedelta(seconds=order, milliseconds=version)
    items = tuple(
        LineItem(sku=f"sku-{n}", quantity=n, price=Decimal(f"{n}.25")) for n in range(1, min(version, 3) + 1)
    )
    state = OrderState(
        orderId=order_id,
        customerId=f"customer-{order % 10_000:05d}",
        status=OrderStatus("Created"),
        items=items,
        currency="EUR",
        createdAt=T0 + timedelta(seconds=order),
        updatedAt=at,
    )
    event_type = "OrderCreated" if version == 1 else "OrderItemAdded" if version <= 3 else "OrderConfirmed"
    return order_id, new_event(event_type, state, version, at=at).to_json()


def write_rounds(log: EventLog, events: int, aggregates: int, first_version: int = 1) -> int:
    """Append ``events`` events over ``aggregates`` orders, one append (one Delta commit) per round."""
    written, version = 0, first_version
    while written < events:
        count = min(aggregates, events - written)
        log.append([order_event(order, version) for order in range(count)])
        written += count
        progress(f"  event log: {written:,}/{events:,} events")
        version += 1
    return version - first_version


def write_adversarial(log: EventLog, orders: int, seed: int = 30) -> int:
    """A small log that a projection must get right, not fast: every order's versions 1..4 appended in a
    shuffled order over four appends, one order in seven missing version 3 (a gap), every event of one order
    in five sent twice (a duplicate, in a later append), and malformed records among them. Returns the
    records written."""
    shuffled = random.Random(seed)
    versions = {
        order: [v for v in (1, 2, 3, 4) if not (order % 7 == 0 and v == 3)] for order in range(orders)
    }
    for order_versions in versions.values():
        shuffled.shuffle(order_versions)
    appends: list[list[tuple[str, str]]] = [[] for _ in range(4)]
    for order, order_versions in versions.items():
        for slot, version in enumerate(order_versions):
            appends[slot].append(order_event(order, version))
    appends.append([order_event(order, v) for order in range(0, orders, 5) for v in versions[order]])
    appends[-1] += malformed_records()
    written = 0
    for records in appends:
        log.append(records)
        written += len(records)
    return written


def malformed_records() -> list[tuple[str | None, str]]:
    """Records validation must quarantine, each for a different reason."""
    body = json.loads(order_event(999_999, 1)[1])

    def changed(**fields) -> str:
        return json.dumps({**body, **fields})

    data_without_customer = {k: v for k, v in body["data"].items() if k != "customerId"}
    return [
        (None, "not json at all"),
        (None, '{"eventType": "OrderCreated", "version": 1'),  # cut short
        (None, "{}"),
        (None, changed(version="1")),  # the version as a string
        (None, changed(version=-1)),
        (None, changed(aggregateType="Invoice")),
        (None, changed(eventId=None)),
        (None, changed(data=data_without_customer)),
        (None, changed(data="not an object")),
        (None, changed(timestamp="yesterday")),
    ]


# --- the measurements ------------------------------------------------------------------------------------
def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure_ours(spark, settings: Settings) -> float:
    from cqrs_orders.pipeline.runner import run_once

    return timed(lambda: run_once(spark, settings))


def ingest_bronze(spark, settings: Settings) -> None:
    """Our bronze half alone: the log validated and appended to bronze_events / bronze_quarantine."""
    from cqrs_orders.pipeline.bronze import to_bronze, to_quarantine, validate_records
    from cqrs_orders.pipeline.runner import STATE_CHECKS
    from cqrs_orders.pipeline.sources import read_records
    from cqrs_orders.pipeline.tables import ensure_tables

    ensure_tables(spark, settings)

    def write(validated, _batch_id):
        validated, checked_at = validated.localCheckpoint(), datetime.now(timezone.utc)
        for name, rows in (("bronze_events", to_bronze), ("bronze_quarantine", to_quarantine)):
            table(settings, name).save(rows(validated, checked_at).write.format("delta").mode("append"))

    (
        validate_records(read_records(spark, settings), STATE_CHECKS)
        .writeStream.foreachBatch(write)
        .option("checkpointLocation", str(settings.warehouse / "_bench" / "bronze_only_checkpoint"))
        .trigger(availableNow=True)
        .start()
        .awaitTermination()
    )


def warehouse_of_its_own(settings: Settings, name: str) -> Settings:
    """A new warehouse beside ``settings``' own, reading the same event log."""
    own = replace(settings, warehouse=settings.warehouse.parent / name)
    own.warehouse.mkdir(parents=True)
    own.event_log_path.symlink_to(settings.event_log_path, target_is_directory=True)
    return own


def measure_bronze_only(spark, settings: Settings) -> tuple[float, int]:
    """Our bronze half alone, on a warehouse of its own reading the same event log: (seconds, rows)."""
    own = warehouse_of_its_own(settings, "bronze-only")
    seconds = timed(lambda: ingest_bronze(spark, own))
    return seconds, table(own, "bronze_events").read(spark).count()


def measure_floor(spark, settings: Settings, name: str) -> float:
    """Read the log as a stream and append it to a Delta table as it is."""
    target = settings.warehouse / "_bench" / name

    def run():
        query = (
            spark.readStream.format("delta")
            .load(str(settings.event_log_path))
            .writeStream.format("delta")
            .option("checkpointLocation", str(target) + "_checkpoint")
            .trigger(availableNow=True)
            .start(str(target))
        )
        query.awaitTermination()

    return timed(run)


def measure_naive(spark, settings: Settings, rounds: int, aggregates: int) -> tuple[float, int]:
    """The seed note's projection, one round of versions per micro-batch; returns (seconds, batches).

    A round is one append of ``aggregates`` events, which the log stores as ``aggregates / SEGMENT_RECORDS``
    files of one segment each (``main`` requires whole segments), so that many files are one round."""
    from delta.tables import DeltaTable
    from pyspark.sql.functions import col, get_json_object

    target = str(settings.warehouse / "_bench" / "naive_orders")
    spark.sql(
        f"CREATE TABLE delta.`{target}` "
        "(order_id STRING, customer_id STRING, status STRING, event_time TIMESTAMP) USING delta"
    )
    # As in the seed note, adapted to this envelope: its data carries orderId (the note read $.id), and
    # every order event type is applied (the note applied only Created/Updated, skipping most events).
    events = (
        spark.readStream.format("delta")
        .option("maxFilesPerTrigger", aggregates // SEGMENT_RECORDS)  # one round per micro-batch
        .load(str(settings.event_log_path))
        .select(
            get_json_object(col("body"), "$.eventType").alias("event_type"),
            get_json_object(col("body"), "$.data").alias("data"),
            col("enqueued_time").alias("event_time"),
        )
    )
    batches = []

    def update_order_projection(batch_df, batch_id):
        orders = batch_df.filter(col("event_type").startswith("Order"))
        if orders.count() > 0:
            parsed_orders = orders.select(
                get_json_object(col("data"), "$.orderId").alias("order_id"),
                get_json_object(col("data"), "$.customerId").alias("customer_id"),
                get_json_object(col("data"), "$.status").alias("status"),
                col("event_time"),
            )
            read_model = DeltaTable.forPath(spark, target)
            read_model.alias("target").merge(
                parsed_orders.alias("source"), "target.order_id = source.order_id"
            ).whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
        batches.append(batch_id)
        progress(f"  naive MERGE: batch {len(batches)}/{rounds}")

    def run():
        query = (
            events.writeStream.foreachBatch(update_order_projection)
            .option("checkpointLocation", target + "_checkpoint")
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()

    return timed(run), len(batches)


def prefill_silver(spark, settings: Settings, rows: int) -> None:
    """``rows`` orders at version 1 in silver_orders, written into our pipeline's own table (its properties
    and layout)."""
    from pyspark.sql import functions as F

    from cqrs_orders.pipeline.tables import SCHEMAS, ensure_tables

    ensure_tables(spark, settings)
    ids = spark.range(rows, numPartitions=max(4, rows // 250_000))
    created = F.timestamp_seconds(F.lit(int(T0.timestamp())) + F.col("id"))
    order_id = F.format_string("order-%09d", "id")
    item = F.struct(
        F.lit("sku-1").alias("sku"), F.lit(1).alias("quantity"), F.lit(Decimal("1.25")).alias("p")
    )
    columns = {
        "silver_orders": [
            order_id.alias("order_id"),
            F.format_string("customer-%05d", F.col("id") % 10_000).alias("customer_id"),
            F.lit("Created").alias("status"),
            F.array(item).alias("items"),
            F.lit(1).alias("item_count"),
            F.lit(Decimal("1.25")).alias("total_amount"),
            F.lit("EUR").alias("currency"),
            created.alias("created_at"),
            created.alias("updated_at"),
            F.lit(1).alias("version"),
            F.expr("uuid()").alias("last_event_id"),
            F.lit("OrderCreated").alias("last_event_type"),
            created.alias("last_event_time"),
            F.current_timestamp().alias("projected_at"),
        ],
    }
    for name, selected in columns.items():
        typed = ids.select(selected).select([F.col(f.name).cast(f.dataType) for f in SCHEMAS[name].fields])
        table(settings, name).save(typed.write.format("delta").mode("append"))


#: MERGE growth batches: the newest orders (what a live system mostly updates) and orders spread evenly over
#: the key space (the worst case: every file holds a touched row, and with deletion vectors off for Synapse,
#: every file is rewritten). Each pattern gets its own versions so the two never claim the same one.
MERGE_PATTERNS = {"recent": (4, 5), "spread": (2, 3)}


def measure_merge(spark, base: Settings, label: str, rows: int, batch: int) -> dict[str, float]:
    """Per pattern of :data:`MERGE_PATTERNS`: a batch of ``batch`` order events merged by our orders MERGE
    alone into silver_orders pre-filled with ``rows`` orders (``merge_*``), then a second such batch through
    our whole silver micro-batch (``silver_batch_*``). Returns the seconds."""
    from pyspark.sql import functions as F

    from cqrs_orders.pipeline.read_models import read_model
    from cqrs_orders.pipeline.silver import apply_batch, batch_slices, latest_per_aggregate, merge_latest

    settings = replace(base, warehouse=base.warehouse.parent / f"merge-{label}")
    progress(f"  MERGE growth ({label}): pre-filling silver with {rows:,} orders")
    prefill_silver(spark, settings, rows)
    step = max(1, rows // batch)
    keys = {"recent": range(max(0, rows - batch), rows), "spread": range(0, step * batch, step)}
    log = EventLog(settings.event_log_path, settings.event_log_partitions)
    for pattern, versions in MERGE_PATTERNS.items():
        for version in versions:
            log.append([order_event(order, version) for order in keys[pattern]])
    ingest_bronze(spark, settings)
    bronze = table(settings, "bronze_events").read(spark)
    seconds = {}
    for batch_id, (pattern, (merged, projected)) in enumerate(MERGE_PATTERNS.items()):
        progress(f"  MERGE growth ({label}, {pattern}): merging {batch:,} events into {rows:,} rows")
        events = bronze.where(F.col("version") == merged)
        latest = read_model("Order").project(latest_per_aggregate(events, "Order")).cache()
        latest.count()  # parsed and collapsed before the clock starts: only the MERGE is timed
        ids = batch_slices(events)["Order"]  # known to a real batch from its grouping job
        merge = partial(merge_latest, spark, table(settings, "silver_orders"), latest, ("order_id",), ids)
        seconds[f"merge_{pattern}"] = timed(merge)
        latest.unpersist()
        events = bronze.where(F.col("version") == projected)
        project = partial(apply_batch, events, batch_id, settings, "benchmark")
        seconds[f"silver_batch_{pattern}"] = timed(project)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the main run (1,000,000)")
    parser.add_argument("--aggregates", type=int, default=100_000, help="orders they spread over (100,000)")
    parser.add_argument("--merge-batch", type=int, default=10_000, help="events in the MERGE growth batch")
    parser.add_argument("--small-rows", type=int, default=100_000, help="small silver table rows (100,000)")
    parser.add_argument(
        "--large-rows", type=int, default=2_000_000, help="large silver table rows (2,000,000)"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir, deleted)"
    )
    parser.add_argument(
        "--auto-cdc", action="store_true", help="also run the AUTO CDC peer (benchmarks/auto_cdc.py)"
    )
    parser.add_argument(
        "--auto-cdc-python",
        type=Path,
        default=DEFAULT_PEER_PYTHON,
        help="the peer environment's Python (default: .venv-pipelines/bin/python in the repository)",
    )
    parser.add_argument(
        "--auto-cdc-target",
        choices=("delta", "iceberg"),
        default="delta",
        help="the peer's AUTO CDC target format: delta (ours), or iceberg, a stand-in (see auto_cdc.py)",
    )
    parser.add_argument(
        "--adversarial-orders", type=int, default=100, help="orders in the peer's adversarial log (100)"
    )
    args = parser.parse_args(argv)
    if min(args.events, args.aggregates, args.merge_batch, args.small_rows, args.large_rows) < 1:
        parser.error("every size must be >= 1")
    if args.aggregates % SEGMENT_RECORDS:  # else a file of the log holds the end of one round and the next's
        parser.error(f"--aggregates must be a multiple of {SEGMENT_RECORDS}, the event log's segment")

    work = Path(args.keep or tempfile.mkdtemp(prefix="cqrs-bench-projection-"))
    try:
        result = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


def run(args, work: Path) -> dict:
    from cqrs_orders.spark import get_spark

    settings = Settings.from_env(warehouse=work / "main", env={})
    progress(f"generating {args.events:,} events over {args.aggregates:,} orders in {work}")
    started = time.perf_counter()
    rounds = write_rounds(EventLog(settings.event_log_path), args.events, args.aggregates)
    generate_seconds = time.perf_counter() - started

    spark = get_spark("cqrs-orders-benchmark")
    # Each side first runs once untimed on the same input (JIT, generated code, page cache), then is timed
    # warm: a projection is a long-running stream. The first passes are reported too (``*_cold_*``).
    progress("warm-up: one floor pass (JIT, page cache)")
    floor_cold = measure_floor(spark, settings, "warmup")
    progress(f"warm-up: one pass of ours on a warehouse of its own; the floor's took {floor_cold:.1f}s")
    ours_cold = measure_ours(spark, warehouse_of_its_own(settings, "ours-warm-up"))
    progress(f"floor: read the log, append to Delta; the first pass of ours took {ours_cold:.1f}s")
    floor = measure_floor(spark, settings, "floor")
    progress(f"ours: bronze + silver (+ gold) with run_once; floor took {floor:.1f}s")
    ours = measure_ours(spark, settings)
    silver_rows = table(settings, "silver_orders").read(spark).count()
    progress(f"ours, bronze stage alone; ours took {ours:.1f}s")
    bronze_only, bronze_only_rows = measure_bronze_only(spark, settings)
    progress(f"naive MERGE, {rounds} rounds; bronze alone took {bronze_only:.1f}s")
    naive, naive_batches = measure_naive(spark, settings, rounds, args.aggregates)
    naive_rows = spark.read.format("delta").load(str(settings.warehouse / "_bench" / "naive_orders")).count()
    progress("MERGE growth")
    small = measure_merge(spark, settings, "small", args.small_rows, args.merge_batch)
    large = measure_merge(spark, settings, "large", args.large_rows, args.merge_batch)
    peer = measure_peer(spark, args, settings, work, ours, ours_cold) if args.auto_cdc else {}
    progress("done")

    def rate(seconds: float, count: int = args.events) -> float:
        return round(count / seconds, 1)

    return {
        "benchmark": "projection",
        "events": args.events,
        "aggregates": args.aggregates,
        "rounds": rounds,
        "generate_seconds": round(generate_seconds, 2),
        "ours_seconds": round(ours, 2),
        "ours_events_per_second": rate(ours),
        "ours_bronze_only_seconds": round(bronze_only, 2),
        "ours_bronze_only_events_per_second": rate(bronze_only),
        "floor_seconds": round(floor, 2),
        "floor_events_per_second": rate(floor),
        "naive_merge_seconds": round(naive, 2),
        "naive_merge_events_per_second": rate(naive),
        "naive_merge_batches": naive_batches,
        "ours_silver_rows": silver_rows,
        "ours_bronze_only_rows": bronze_only_rows,
        "naive_rows": naive_rows,
        "merge_batch_events": args.merge_batch,
        "merge_small_rows": args.small_rows,
        "merge_large_rows": args.large_rows,
        **{f"{k}_small_seconds": round(v, 2) for k, v in small.items()},
        **{f"{k}_large_seconds": round(v, 2) for k, v in large.items()},
        "ratio_ours_to_floor": round(ours / floor, 2),
        "ours_cold_seconds": round(ours_cold, 2),
        "floor_cold_seconds": round(floor_cold, 2),
        "ratio_ours_to_floor_cold": round(ours_cold / floor_cold, 2),
        "ratio_ours_bronze_only_to_floor": round(bronze_only / floor, 2),
        "ratio_ours_to_naive": round(naive / ours, 2),
        **{f"ratio_{k}_large_to_small": round(large[k] / small[k], 2) for k in small},
        "ours_within_8x_of_floor": ours <= 8 * floor,
        "ours_at_least_as_fast_as_naive": ours <= naive,
        "recent_merge_large_within_1_5x_of_small": large["merge_recent"] <= 1.5 * small["merge_recent"],
        "cpu_count": os.cpu_count(),
        "spark_version": spark.version,
        **peer,
    }


def measure_peer(spark, args, settings: Settings, work: Path, ours: float, ours_cold: float) -> dict:
    """The AUTO CDC peer on the benchmark's log (timed; its tables checked against ours) and on a small
    adversarial log (checked against ours run on the same log): the ``auto_cdc_*`` figures."""
    from cqrs_orders.pipeline.runner import run_once

    progress("AUTO CDC peer: spark-pipelines on the same event log (a new JVM: cold)")
    peer = run_peer(args.auto_cdc_python, settings.event_log_path, work / "auto-cdc", args.auto_cdc_target)
    ran = {
        "auto_cdc_spark_version": peer.spark_version,
        "auto_cdc_delta": peer.delta,
        "auto_cdc_target": peer.target,
        "auto_cdc_ran": peer.error is None,
        "auto_cdc_process_seconds": round(peer.process_seconds, 2),
    }
    if peer.error is not None:  # reported as seen; nothing of it to time or compare
        progress(f"AUTO CDC peer failed: {peer.error}")
        return {**ran, "auto_cdc_error": peer.error}
    progress(f"AUTO CDC peer took {peer.seconds:.1f}s; checking its tables against ours")
    checked = compare(spark, lambda name: table(settings, name).read(spark), peer.warehouse)
    # The protocol of the table AUTO CDC wrote (an Iceberg stand-in's is a Delta copy: not asked).
    protocol = {}
    if peer.target == "delta":
        silver_orders = table_protocol(spark, peer_table(peer.warehouse, "silver_orders"))
        protocol = {
            "auto_cdc_silver_min_reader_version": silver_orders["min_reader_version"],
            "auto_cdc_silver_min_writer_version": silver_orders["min_writer_version"],
            "auto_cdc_silver_table_features": silver_orders["table_features"],
        }

    progress(f"adversarial log: {args.adversarial_orders} orders, ours and the peer")
    adversarial = replace(settings, warehouse=work / "adversarial")
    records = write_adversarial(EventLog(adversarial.event_log_path), args.adversarial_orders)
    ours_counts = run_once(spark, adversarial)
    peer_adversarial = run_peer(
        args.auto_cdc_python, adversarial.event_log_path, work / "auto-cdc-adversarial", args.auto_cdc_target
    )
    if peer_adversarial.error is not None:
        raise RuntimeError(f"the AUTO CDC peer ran the benchmark's log but failed on the adversarial one: "
                           f"{peer_adversarial.error}")  # fmt: skip
    hostile = compare(spark, lambda name: table(adversarial, name).read(spark), peer_adversarial.warehouse)

    def silver_equal(figures: dict) -> bool:
        return all(figures[name]["equal"] for name in COMPARED_TABLES if name.startswith("silver_"))

    rate = round(args.events / peer.seconds, 1)
    return {
        **ran,
        "auto_cdc_seconds": round(peer.seconds, 2),
        "auto_cdc_events_per_second": rate,
        "auto_cdc_ratio_to_ours": round(ours / peer.seconds, 2),
        "auto_cdc_ratio_to_ours_cold": round(ours_cold / peer.seconds, 2),
        "auto_cdc_silver_equals_ours": silver_equal(checked),
        "auto_cdc_gold_equals_ours": checked["gold_daily_order_metrics"]["equal"],
        "auto_cdc_silver_rows": checked["silver_orders"]["rows"],
        "auto_cdc_bronze_rows": checked["bronze_checked"]["rows"],
        "auto_cdc_quarantined": checked["bronze_checked"]["quarantined"],
        **protocol,
        "auto_cdc_adversarial_records": records,
        "auto_cdc_adversarial_bronze_rows": hostile["bronze_checked"]["rows"],
        "auto_cdc_adversarial_quarantined": hostile["bronze_checked"]["quarantined"],
        "auto_cdc_adversarial_ours_bronze_rows": ours_counts.get("bronze_events"),
        "auto_cdc_adversarial_ours_quarantined": ours_counts.get("bronze_quarantine"),
        "auto_cdc_adversarial_silver_rows": hostile["silver_orders"]["rows"],
        "auto_cdc_adversarial_silver_equals_ours": silver_equal(hostile),
        "auto_cdc_adversarial_gold_equals_ours": hostile["gold_daily_order_metrics"]["equal"],
    }


if __name__ == "__main__":
    sys.exit(main())
