"""The Spark session: Databricks' own when running there, a quiet local one with Delta otherwise."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from importlib.resources import files

from cqrs_orders.config import prepare_local_spark, running_on_databricks, value_of
from cqrs_orders.errors import SparkUnavailableError

#: What the pipeline's plans need wherever they run. The bundle's job cluster sets the same in its
#: ``spark_conf`` (``databricks.yml``; the bundle tests hold the deployed cluster to this).
PIPELINE_CONF = {
    # A micro-batch compiles more distinct classes (our plans plus Delta's own: ~120) than the default cache
    # of 100 holds; they would evict each other and every batch would compile all of them again. Bounded
    # all the same: each batch adds a few classes of its own (Delta's per-version filters), held until
    # evicted: at 2,000, over 100 MiB of the test suite's heap after a single module.
    "spark.sql.codegen.cache.maxEntries": "500",
    # HotSpot does not compile a method over 8,000 bytes of bytecode: under Spark's default limit (65,535)
    # a fused stage as long as validation's would run interpreted; past 8,000 it runs unfused, compiled.
    "spark.sql.codegen.hugeMethodLimit": "8000",
    # Auto compaction (the append-only tables) treats files under this size as small; with Delta's default,
    # 64 MiB, it rewrote at once the files of a large backlog batch, where the aim is only to pack the tiny
    # files of small micro-batches (still done: every 50 of them). Figures: benchmarks/RESULTS.md.
    "spark.databricks.delta.autoCompact.minFileSize": str(16 * 1024 * 1024),
}

#: What a local session sets on top (also the AUTO CDC peer's, benchmarks/auto_cdc.py, so both run alike).
LOCAL_CONF = {
    **PIPELINE_CONF,
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    # Small local data: a handful of partitions beats the defaults of 200 (shuffle) and 50 (Delta log).
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.default.parallelism": "4",
    # VACUUM lists a table's folders in up to 10,000 tasks by default, which dominates it on a small table.
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    # A sort takes its first memory page at this size whatever it sorts; Spark's default for a 4 GiB heap
    # is 64 MiB. Spark 4 also keeps each task thread's last sorter (SortExec's thread-local), and with it
    # that page, for as long as the thread lives: small pages keep those held sorters small.
    "spark.buffer.pageSize": "4m",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.streaming.stopGracefullyOnShutdown": "true",
    # Delta's SQL parser on Spark 4.1 drops spark.sql(query, args=...) values (UNBOUND_SQL_PARAMETER,
    # delta-io/delta#7640); the legacy binding path still binds them as literals, never as SQL text.
    "spark.sql.legacy.parameterSubstitution.constantsOnly": "true",
}


def driver_memory(env=None) -> str:
    """The driver heap for a local session (``CQRS_SPARK_DRIVER_MEMORY``, checked by its declaration in
    :mod:`cqrs_orders.config`: a JVM that cannot start says only "gateway exited")."""
    return value_of("spark_driver_memory", env)


def get_spark(app_name: str = "cqrs-orders"):
    """The active session on Databricks (or one already running); else a new local session with Delta."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailableError(
            "PySpark is not installed. Install the local extra: pip install -e '.[local]' "
            "(on Databricks the runtime provides Spark)."
        ) from None

    if running_on_databricks():
        return SparkSession.builder.getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    return _local_session(app_name)


def _local_session(app_name: str):
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    from cqrs_orders import jars

    prepare_local_spark()
    log4j = files("cqrs_orders") / "resources" / "log4j2.properties"
    builder = (
        SparkSession.builder.master("local[*]")
        .appName(app_name)
        .config("spark.driver.memory", driver_memory())
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
    )
    for key, value in LOCAL_CONF.items():
        builder = builder.config(key, value)
    # The session catalog's folder (Spark's default: ./spark-warehouse, created in whatever directory the
    # command runs from). Nothing of the project lives in that catalog; a private temporary folder keeps
    # the caller's directory clean and is removed when the process ends.
    catalog_dir = tempfile.mkdtemp(prefix="cqrs-orders-spark-catalog-")
    atexit.register(shutil.rmtree, catalog_dir, True)
    builder = builder.config("spark.sql.warehouse.dir", catalog_dir)
    builder = _with_jars(builder)
    try:
        spark = builder.getOrCreate()
    except PySparkRuntimeError as error:
        raise SparkUnavailableError(
            "Spark could not start: the Delta/Kafka jars could not be fetched or Java 17 is missing. "
            "Install Maven (mvn) and make sure it can reach Maven Central, or set CQRS_JARS_DIR to a folder "
            f"holding {', '.join(jars.maven_coordinates())} and their dependencies. ({error.getCondition()})"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _with_jars(builder):
    from cqrs_orders import jars

    try:
        paths = jars.cached_or_fetched()
    except SparkUnavailableError as maven_error:
        if "not installed" not in str(maven_error):
            raise
        from delta import configure_spark_with_delta_pip  # Spark's own resolver, as a last resort

        return configure_spark_with_delta_pip(builder, extra_packages=jars.maven_coordinates()[1:])
    return builder.config("spark.jars", ",".join(paths))
