"""The projection benchmark's AUTO CDC peer: the same event log through ``auto_cdc_pipeline.py`` under the
``spark-pipelines`` CLI, in the peer's own environment.

Two halves in one file, so the benchmark and the peer agree on every path and name:

* :func:`main` runs in the peer's environment (``.venv-pipelines``: Spark 4.3 from the extra ``auto-cdc``):
  it fetches the Delta jars once, writes a pipeline spec into a work folder, runs ``spark-pipelines run`` on
  it, and prints ONE JSON line with the run's times (progress and the CLI's own output on stderr).
  ``python benchmarks/auto_cdc.py --event-log LOG --work DIR`` runs the peer alone.
* :func:`run_peer` (which starts :func:`main` as a subprocess of that environment's Python) and
  :func:`compare` run in the benchmark's process, on the suite's pinned pair: ``compare`` reads the peer's
  Delta tables with the benchmark's own Spark and checks them against ours row for row.

Only the standard library is imported at the top: the benchmark's environment has Spark 4.1, the peer's
Spark 4.3, and each half imports what it needs where it runs.

No Delta release is built for Spark 4.3 (Delta 4.4 is built for Spark 4.0, 4.1 and 4.2, and neither a
``delta-spark`` Python package nor a ``delta-spark_4.3`` jar accepts 4.3), so the peer runs the newest
build there is, Delta 4.4.0 for Spark 4.2 (:data:`DELTA_COORDINATES`): not a supported pairing, which is one
reason the benchmark checks the peer's tables rather than assume them. With it, the update stops before any
flow runs: open-source AUTO CDC needs a target that supports row-level operations (DSv2
``SupportsRowLevelOperations``), and Delta's tables do not implement that interface
(``AUTOCDC_TARGET_DOES_NOT_SUPPORT_MERGE``); the benchmark reports that error as its result.
``--target iceberg`` writes AUTO CDC's targets to an Iceberg catalog instead (Iceberg's tables do support
row-level operations), as a stand-in that measures the engine, not the format this project needs; those
targets are copied into Delta after the timed run so the benchmark can compare them. It does not run on
Spark 4.3 either: the newest Iceberg build is for Spark 4.1, and it fails as the pipeline starts
(``SparkView can not implement ...connector.catalog.View, because it is not an interface``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("auto_cdc")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: The pipeline definition the CLI runs (copied into each run's work folder beside its spec).
DEFINITION = HERE / "auto_cdc_pipeline.py"
#: The peer's environment, made as the README says (``python -m venv .venv-pipelines`` and the extra).
DEFAULT_ENV = REPO / ".venv-pipelines"
#: The newest Delta build there is for the newest Spark it supports (4.2); none exists for 4.3.
DELTA_COORDINATES = ["io.delta:delta-spark_4.2_2.13:4.4.0"]
#: The CLI's line that ends registration and starts the update: the run's clock starts there.
RUN_STARTS = "Starting run"
#: An error as Spark prints it: a condition (``[NAME] message``), or the details of a failed Spark Connect
#: call (``details = "message"``, when the server's error has no condition), up to the end of the line.
ERROR_CONDITION = re.compile(r'\[[A-Z][A-Z0-9_]+\] .*|details = "(.*?)"?$')
#: Columns that differ between any two runs by design (the time a row was written), left out of comparisons.
UNCOMPARED = ("projected_at", "ingest_time")
#: The Iceberg stand-in (``--target iceberg``): open-source AUTO CDC needs a target that supports row-level
#: operations (DSv2 ``SupportsRowLevelOperations``), which Delta's tables do not implement; Iceberg's do. The
#: newest Iceberg build for the newest Spark it supports (4.1); none exists for 4.3 either.
ICEBERG_COORDINATES = ["org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.11.0"]
ICEBERG_CATALOG = "iceberg"
#: The column AUTO CDC adds to each target (the sequence of each key's last upsert and delete).
AUTO_CDC_METADATA = "__spark_autocdc_metadata"
#: AUTO CDC's targets: the latest-state read models.
TARGET_TABLES = ("silver_orders", "silver_customers")
#: The tables the peer writes that have a counterpart of ours with the same name and columns.
COMPARED_TABLES = ("silver_orders", "silver_customers", "silver_product_sales", "gold_daily_order_metrics")


# --- in the peer's environment ---------------------------------------------------------------------------
def cached_jars(coordinates: list[str], name: str) -> list[str]:
    """Jars for the peer's Spark, fetched once by the project's own Maven fetch into a folder of their own."""
    import pyspark

    from cqrs_orders import jars

    folder = Path.home() / ".cache" / "cqrs-orders" / "jars" / f"auto-cdc-spark-{pyspark.__version__}-{name}"
    return jars.cached_or_fetched(coordinates, folder)


def spark_confs(warehouse: Path, target: str) -> dict[str, str]:
    """What the peer's Spark is started with: our local session's settings
    (:data:`cqrs_orders.spark.LOCAL_CONF`), the Delta jars, a warehouse folder of its own (where the catalog
    puts its tables); for an Iceberg ``target``, the Iceberg jars and a catalog ``iceberg`` beside it."""
    from cqrs_orders.config import value_of
    from cqrs_orders.spark import LOCAL_CONF

    log4j = REPO / "src" / "cqrs_orders" / "resources" / "log4j2.properties"
    paths = cached_jars(DELTA_COORDINATES, "delta-" + DELTA_COORDINATES[0].rsplit(":", 1)[1])
    confs = {
        **LOCAL_CONF,
        "spark.driver.memory": value_of("spark_driver_memory"),
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j}",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.sql.sources.default": "delta",
    }
    if target == "iceberg":
        paths += cached_jars(ICEBERG_COORDINATES, "iceberg-" + ICEBERG_COORDINATES[0].rsplit(":", 1)[1])
        confs |= {
            f"spark.sql.catalog.{ICEBERG_CATALOG}": "org.apache.iceberg.spark.SparkCatalog",
            f"spark.sql.catalog.{ICEBERG_CATALOG}.type": "hadoop",
            f"spark.sql.catalog.{ICEBERG_CATALOG}.warehouse": str(warehouse.parent / "iceberg"),
        }
    return {**confs, "spark.jars": ",".join(paths)}


def export_targets(confs: dict[str, str], warehouse: Path) -> None:
    """Copy the Iceberg targets into Delta tables where :func:`peer_table` finds them, so the benchmark
    (whose Spark has no Iceberg) can compare them; after the timed run, in a session of this process."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[*]").appName("auto-cdc-export")
    for key, value in confs.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        for name in TARGET_TABLES:
            rows = spark.read.table(f"{ICEBERG_CATALOG}.default.{name}").drop(AUTO_CDC_METADATA)
            rows.write.format("delta").save(str(peer_table(warehouse, name)))
    finally:
        spark.stop()


def write_spec(folder: Path, storage: Path, event_log: Path, target: str) -> Path:
    """The pipeline spec (JSON, which the CLI's YAML reader takes) beside a copy of the definition. The
    event log is in its ``configuration``: the session's confs, which the definition reads (spark-submit
    drops a ``--conf`` whose name does not start with ``spark.``)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(DEFINITION, folder / DEFINITION.name)
    spec = {
        "name": "cqrs-orders-auto-cdc",
        "storage": storage.as_uri(),
        "configuration": {
            "cqrs.auto_cdc.event_log": str(event_log),
            "cqrs.auto_cdc.target_catalog": ICEBERG_CATALOG if target == "iceberg" else "spark_catalog",
        },
        "libraries": [{"glob": {"include": DEFINITION.name}}],
    }
    path = folder / "spark-pipeline.yml"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def run_cli(spec: Path, confs: dict[str, str]) -> dict:
    """Run ``spark-pipelines run`` on ``spec``; its output goes to stderr. Returns the seconds of the whole
    process (JVM start, Spark Connect server, registration, the update, stop) and of the update alone (from
    the CLI's "Starting run" line to the end of its event stream); for a run that failed, the whole
    process's seconds and the error it ended with (``error``: the last error condition it printed).

    The confs go in ``PYSPARK_SUBMIT_ARGS``, not on the CLI's command line: the CLI's own JVM only runs its
    Python, whose ``remote("local")`` session starts a second JVM (the Spark Connect server that runs the
    pipeline) with that variable's arguments; a ``--conf`` given to the CLI never reaches it (the Delta jars
    were then missing: ``DATA_SOURCE_NOT_FOUND``)."""
    import pyspark

    home = Path(pyspark.__file__).parent
    cli = Path(sys.executable).parent / "spark-pipelines"
    command = [str(cli), "run", "--spec", str(spec)]
    submit = [part for key, value in confs.items() for part in ("--conf", f"{key}={value}")]
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONUNBUFFERED": "1",
        "PYSPARK_SUBMIT_ARGS": shlex.join([*submit, "pyspark-shell"]),
    }
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    started = time.perf_counter()
    run_started = last_line = error = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=spec.parent
    ) as process:
        for line in process.stdout:
            now = time.perf_counter()
            sys.stderr.write(f"  [spark-pipelines] {line}")
            if run_started is None and RUN_STARTS in line:
                run_started = now
            condition = ERROR_CONDITION.search(line)
            error = (condition.group(1) or condition.group(0)).strip() if condition else error
            last_line = now
        code = process.wait()
    ended = time.perf_counter()
    if code != 0:
        return {"process_seconds": ended - started, "error": error or f"spark-pipelines run exited {code}"}
    if run_started is None:
        raise RuntimeError(f"spark-pipelines printed no {RUN_STARTS!r} line: cannot time the update")
    return {"process_seconds": ended - started, "seconds": last_line - run_started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--event-log", type=Path, required=True, help="the event log (a Delta table) to read")
    parser.add_argument("--work", type=Path, required=True, help="a new folder for the spec and tables")
    parser.add_argument(
        "--target",
        choices=("delta", "iceberg"),
        default="delta",
        help="the AUTO CDC targets' format (delta; iceberg: a stand-in, see benchmarks/RESULTS.md)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    import pyspark

    work = args.work.resolve()
    warehouse = work / "warehouse"
    spec = write_spec(work / "pipeline", work / "storage", args.event_log.resolve(), args.target)
    log.info(
        "AUTO CDC peer: Spark %s, %s, targets %s, tables in %s",
        pyspark.__version__,
        DELTA_COORDINATES[0],
        args.target,
        warehouse,
    )
    confs = spark_confs(warehouse, args.target)
    outcome = run_cli(spec, confs)
    if args.target == "iceberg" and "error" not in outcome:
        export_targets(confs, warehouse)
    result = {
        "spark_version": pyspark.__version__,
        "delta": DELTA_COORDINATES[0],
        "target": args.target,
        "warehouse": str(warehouse),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in outcome.items()},
    }
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


# --- in the benchmark's process --------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerRun:
    process_seconds: float
    warehouse: Path
    spark_version: str
    delta: str
    target: str
    #: The update's seconds, or None when the run failed with ``error``.
    seconds: float | None
    error: str | None


def run_peer(python: Path, event_log: Path, work: Path, target: str = "delta") -> PeerRun:
    """Run :func:`main` with the peer environment's ``python``; its stderr passes through as progress."""
    if not python.exists():
        raise SystemExit(
            f"no AUTO CDC peer environment at {python}: make it with "
            "`python3 -m venv .venv-pipelines && .venv-pipelines/bin/pip install -e '.[auto-cdc]'`"
        )
    finished = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--event-log", str(event_log), "--work", str(work),
         "--target", target],
        stdout=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    lines = finished.stdout.strip().splitlines()
    if not lines:  # it failed before it could say how (its output is above)
        raise RuntimeError(f"the AUTO CDC peer failed (exit {finished.returncode}) without a result")
    result = json.loads(lines[-1])
    return PeerRun(
        result["process_seconds"],
        Path(result["warehouse"]),
        result["spark_version"],
        result["delta"],
        result["target"],
        result.get("seconds"),
        result.get("error"),
    )


def peer_table(warehouse: Path, name: str) -> Path:
    """Where the peer's catalog put table ``name`` (the default database's folder in its warehouse)."""
    return warehouse / name


def compare(spark, ours_table, warehouse: Path) -> dict:
    """The peer's tables against ours, row for row (all columns but :data:`UNCOMPARED`, duplicates
    counted): per table whether they are equal, and the peer's row counts; ``ours_table(name)`` reads ours."""
    from pyspark.sql import functions as F

    figures = {}
    for name in COMPARED_TABLES:
        ours = ours_table(name)
        theirs = spark.read.format("delta").load(str(peer_table(warehouse, name)))
        columns = [c for c in ours.columns if c not in UNCOMPARED]
        ours, theirs = ours.select(columns), theirs.select(columns)
        equal = ours.exceptAll(theirs).isEmpty() and theirs.exceptAll(ours).isEmpty()
        figures[name] = {"equal": equal, "rows": theirs.count()}
    checked = spark.read.format("delta").load(str(peer_table(warehouse, "bronze_checked")))
    rejected = checked.where(F.size("failed_expectations") > 0)
    figures["bronze_checked"] = {"rows": checked.count(), "quarantined": rejected.count()}
    return figures


def table_protocol(spark, path: Path) -> dict:
    """A Delta table's reader and writer versions, table features and properties (what Synapse checks)."""
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first().asDict()
    return {
        "min_reader_version": detail["minReaderVersion"],
        "min_writer_version": detail["minWriterVersion"],
        "table_features": sorted(detail.get("tableFeatures") or []),
        "properties": dict(detail.get("properties") or {}),
    }


if __name__ == "__main__":
    sys.exit(main())
