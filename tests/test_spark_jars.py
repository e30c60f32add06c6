"""Local Spark's jars: coordinates follow the installed pyspark/delta-spark, and failure is one clear line.

Both Spark pairs the project runs on (the pinned local one and Databricks Runtime 18's) start from these
jars; the naming rule is checked here without Spark, and the session test loads them for real on whichever
pair is installed (``.ci/run`` runs this module on both).
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pyspark
import pytest

from cqrs_orders import jars


@pytest.mark.parametrize(
    ("delta", "spark", "artifact"),
    [
        ("4.0.0", "4.0.1", "delta-spark_2.13"),  # up to 4.0: no Spark suffix yet
        ("4.0.1", "4.0.0", "delta-spark_2.13"),
        ("3.3.2", "3.5.3", "delta-spark_2.13"),
        ("4.1.0", "4.0.1", "delta-spark_4.0_2.13"),  # from 4.1 on: one artifact per Spark minor
        ("4.1.0", "4.1.1", "delta-spark_4.1_2.13"),  # the Runtime 18 pair: the first Delta for Spark 4.1
        ("4.4.0", "4.1.1", "delta-spark_4.1_2.13"),  # the pinned local pair
        ("4.4.0rc1", "4.1.1", "delta-spark_4.1_2.13"),
        ("5.0.0", "4.2.0", "delta-spark_4.2_2.13"),
    ],
)
def test_the_delta_artifact_is_named_the_way_that_release_was_published(delta, spark, artifact):
    assert jars.delta_artifact(delta, spark) == artifact
    assert jars.maven_coordinates(spark, delta) == [
        f"io.delta:{artifact}:{delta}",
        f"org.apache.spark:spark-sql-kafka-0-10_2.13:{spark}",
    ]


def test_coordinates_and_cache_folder_follow_the_installed_pair(monkeypatch):
    monkeypatch.delenv("CQRS_JARS_DIR", raising=False)
    delta = version("delta-spark")
    assert jars.maven_coordinates() == jars.maven_coordinates(pyspark.__version__, delta)
    assert jars.cache_dir().name == f"spark-{pyspark.__version__}-delta-{delta}"


def test_jars_pyspark_already_ships_are_recognised_by_artifact_name():
    assert jars._artifact("jackson-core-2.13.5.jar") == "jackson-core"
    assert jars._artifact("delta-spark_4.1_2.13-4.4.0.jar") == "delta-spark_4.1_2.13"
    assert jars._artifact("zstd-jni-1.5.7-3.jar") == "zstd-jni"


def test_the_session_has_delta_and_kafka(spark, tmp_path):
    delta_class = spark._jvm.java.lang.Class.forName(
        "io.delta.tables.DeltaTable", True, spark._jvm.Thread.currentThread().getContextClassLoader()
    )
    loaded_from = delta_class.getProtectionDomain().getCodeSource().getLocation().getPath()
    artifact = jars.delta_artifact(version("delta-spark"), pyspark.__version__)
    assert loaded_from.endswith(f"/{artifact}-{version('delta-spark')}.jar")  # this pair's jar, no other
    spark.range(3).write.format("delta").save(str(tmp_path / "t"))
    assert spark.read.format("delta").load(str(tmp_path / "t")).count() == 3
    kafka = spark.readStream.format("kafka").option("kafka.bootstrap.servers", "127.0.0.1:1")
    assert "offset" in kafka.option("subscribe", "t").load().columns


def test_unfetchable_jars_end_the_cli_with_one_line(tmp_path):
    failing_maven = tmp_path / "bin" / "mvn"
    failing_maven.parent.mkdir()
    failing_maven.write_text(
        "#!/bin/sh\necho '[ERROR] Could not transfer artifact: network is unreachable'\nexit 1\n"
    )
    failing_maven.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{failing_maven.parent}{os.pathsep}{os.environ['PATH']}",
        "CQRS_JARS_DIR": str(tmp_path / "no-jars-yet"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "cqrs_orders.cli", "rebuild", "--warehouse", str(tmp_path / "w")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert "Maven could not fetch the jars" in last_line and "network is unreachable" in last_line
    assert "Traceback" not in result.stderr
