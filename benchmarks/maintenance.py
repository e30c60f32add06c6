"""What ``cqrs-orders maintain`` buys: one MERGE of the newest orders before and after clustering silver.

silver_orders is pre-filled with ``--rows`` orders and rewritten as ``--files`` files that each span the
whole key range: the worst a long run of MERGEs can leave, since no file can then be skipped. A batch of
the ``--batch`` newest orders is merged by our silver MERGE (bounded to the batch's key range), then
``maintain`` clusters the table (OPTIMIZE ZORDER BY order_id, files of at most 32 MiB) and a second batch
of the same orders is merged. Each MERGE's rewritten files come from Delta's own operation metrics.

Prints ONE JSON line; progress goes to stderr. Usage: ``python benchmarks/maintenance.py --rows 200000``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

from projection import ingest_bronze, order_event, prefill_silver, progress, timed

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.config import Settings
from cqrs_orders.delta_io import Table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="orders in silver_orders (2,000,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="newest orders per MERGE batch (10,000)")
    parser.add_argument("--files", type=int, default=32, help="files the table is scattered over (32)")
    args = parser.parse_args(argv)
    if min(args.rows, args.batch, args.files) < 1 or args.batch > args.rows:
        parser.error("sizes must be >= 1 and --batch at most --rows")
    work = Path(tempfile.mkdtemp(prefix="cqrs-bench-maintenance-"))
    try:
        result = run(args, Settings.from_env(warehouse=work / "warehouse", env={}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


def run(args, settings: Settings) -> dict:
    from pyspark.sql import functions as F

    from cqrs_orders.pipeline.maintenance import maintain
    from cqrs_orders.pipeline.read_models import read_model
    from cqrs_orders.pipeline.silver import batch_slices, latest_per_aggregate, merge_latest
    from cqrs_orders.spark import get_spark

    spark = get_spark("cqrs-orders-benchmark")
    orders = Table(settings.table("silver_orders"))
    progress(f"pre-filling silver_orders with {args.rows:,} orders, scattered over {args.files} files")
    prefill_silver(spark, settings, args.rows)
    scattered = orders.read(spark).repartition(args.files)  # round robin: every file spans every key
    orders.save(scattered.write.format("delta").mode("overwrite"))
    files_scattered = orders.delta(spark).detail().first()["numFiles"]

    newest = range(args.rows - args.batch, args.rows)
    log = EventLog(settings.event_log_path, settings.event_log_partitions)
    for version in (2, 3):
        log.append([order_event(order, version) for order in newest])
    ingest_bronze(spark, settings)
    bronze = Table(settings.table("bronze_events")).read(spark)

    def merge(version: int) -> tuple[float, int]:
        """Seconds of one bounded MERGE of the batch at ``version``, and the files it rewrote."""
        events = bronze.where(F.col("version") == version)
        latest = read_model("Order").project(latest_per_aggregate(events, "Order")).cache()
        latest.count()  # parsed and collapsed before the clock starts: only the MERGE is timed
        ids = batch_slices(events)["Order"]
        seconds = timed(partial(merge_latest, spark, orders, latest, ("order_id",), ids))
        latest.unpersist()
        metrics = orders.delta(spark).history(1).first()["operationMetrics"]
        return seconds, int(metrics["numTargetFilesRemoved"])

    progress(f"MERGE of the {args.batch:,} newest orders into the scattered table")
    scattered_seconds, scattered_rewritten = merge(2)
    progress("cqrs-orders maintain (OPTIMIZE ZORDER BY order_id, no VACUUM)")
    maintain_seconds = timed(partial(maintain, spark, settings, vacuum=False))
    files_clustered = orders.delta(spark).detail().first()["numFiles"]
    progress(f"MERGE of the {args.batch:,} newest orders into the clustered table")
    clustered_seconds, clustered_rewritten = merge(3)
    return {
        "benchmark": "maintenance",
        "rows": args.rows,
        "batch_events": args.batch,
        "files_scattered": files_scattered,
        "merge_scattered_seconds": round(scattered_seconds, 2),
        "merge_scattered_files_rewritten": scattered_rewritten,
        "maintain_seconds": round(maintain_seconds, 2),
        "files_clustered": files_clustered,
        "merge_clustered_seconds": round(clustered_seconds, 2),
        "merge_clustered_files_rewritten": clustered_rewritten,
        "ratio_scattered_to_clustered": round(scattered_seconds / clustered_seconds, 2),
        "cpu_count": os.cpu_count(),
        "spark_version": spark.version,
    }


if __name__ == "__main__":
    sys.exit(main())
