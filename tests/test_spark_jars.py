"""Local Spark's jars: coordinates follow the installed pyspark/delta-spark, and failure is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pyspark

from cqrs_orders import jars


def test_coordinates_match_the_installed_spark_and_delta():
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    assert jars.maven_coordinates() == [
        f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}",
        f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}",
    ]


def test_jars_pyspark_already_ships_are_recognised_by_artifact_name():
    assert jars._artifact("jackson-core-2.13.5.jar") == "jackson-core"
    assert jars._artifact("delta-spark_4.1_2.13-4.4.0.jar") == "delta-spark_4.1_2.13"
    assert jars._artifact("zstd-jni-1.5.7-3.jar") == "zstd-jni"


def test_the_session_has_delta_and_kafka(spark, tmp_path):
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
        [sys.executable, "-m", "cqrs_orders.cli", "sql", "SELECT 1", "--warehouse", str(tmp_path / "w")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert "Maven could not fetch the jars" in last_line and "network is unreachable" in last_line
    assert "Traceback" not in result.stderr
