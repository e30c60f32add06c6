"""The Delta Lake and Kafka connector jars for local Spark, fetched once and cached.

The Delta jar is built per Spark minor version, so the Maven coordinates are derived from the installed
``pyspark`` and ``delta-spark`` versions. Resolution order:

1. the cache folder (``CQRS_JARS_DIR``, default ``~/.cache/cqrs-orders/jars/spark-X-delta-Y``);
2. Maven (``mvn dependency:copy-dependencies``), which honours the user's Maven settings (mirrors, proxies);
3. Spark's own resolver (``configure_spark_with_delta_pip``), used by :mod:`cqrs_orders.spark` when Maven
   is not installed.

Jars that pyspark already ships are left out, so the classpath has one copy of each library.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import pyspark

from cqrs_orders.errors import SparkUnavailableError

SCALA_VERSION = "2.13"
_MARKER = ".complete"


def maven_coordinates() -> list[str]:
    """``group:artifact:version`` of the Delta and Kafka connector jars matching the installed pyspark."""
    spark_version = pyspark.__version__
    spark_minor = ".".join(spark_version.split(".")[:2])
    return [
        f"io.delta:delta-spark_{spark_minor}_{SCALA_VERSION}:{version('delta-spark')}",
        f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_VERSION}:{spark_version}",
    ]


def cache_dir() -> Path:
    configured = os.environ.get("CQRS_JARS_DIR")
    if configured:
        return Path(configured).expanduser()
    name = f"spark-{pyspark.__version__}-delta-{version('delta-spark')}"
    return Path.home() / ".cache" / "cqrs-orders" / "jars" / name


def cached_jars() -> list[str] | None:
    folder = cache_dir()
    if not (folder / _MARKER).exists():
        return None
    return sorted(str(path) for path in folder.glob("*.jar"))


def fetch_with_maven() -> list[str]:
    """Copy the jars and their dependencies into the cache folder with Maven; return their paths."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Fetching the Delta and Kafka jars with Maven into {folder} (first run only)...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cqrs-jars-") as work:
        out = Path(work)
        copy_with_maven(maven_coordinates(), out)
        shipped = {_artifact(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
        for jar in out.glob("*.jar"):
            if _artifact(jar.name) not in shipped:
                shutil.copy2(jar, folder / jar.name)
    (folder / _MARKER).write_text("\n".join(maven_coordinates()) + "\n")
    return cached_jars() or []


def copy_with_maven(coordinates: list[str], output: Path) -> None:
    """Copy ``group:artifact:version`` jars and their runtime dependencies into ``output`` with Maven."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SparkUnavailableError("Maven (mvn) is not installed")
    with tempfile.TemporaryDirectory(prefix="cqrs-maven-") as work:
        work_path = Path(work)
        (work_path / "pom.xml").write_text(_pom(coordinates))
        (work_path / "settings.xml").write_text(_settings(work_path / "no-other-repositories"))
        result = subprocess.run(
            [mvn, "-q", "-B", "-gs", "settings.xml", "dependency:copy-dependencies",
             f"-DoutputDirectory={output}", "-DincludeScope=runtime"],
            cwd=work, capture_output=True, text=True, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        last = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["(no output)"]
        raise SparkUnavailableError(f"Maven could not fetch the jars: {_strip_ansi(last[0])}")


def _artifact(file_name: str) -> str:
    """``jackson-core-2.13.5.jar`` -> ``jackson-core``."""
    return re.sub(r"-\d[\w.]*(-[\w.]+)?\.jar$", "", file_name)


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _pom(coordinates: list[str]) -> str:
    deps = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in (c.split(":") for c in coordinates)
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cqrs-orders</groupId><artifactId>spark-jars</artifactId><version>1</version>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


def _settings(empty_repository: Path) -> str:
    # Spark's parent POM names an extra repository; route every repository but Maven's default one to an
    # empty local folder so an unreachable extra repository cannot fail the build.
    empty_repository.mkdir(exist_ok=True)
    return f"""<settings>
  <mirrors>
    <mirror>
      <id>only-the-default-repository</id>
      <mirrorOf>*,!central</mirrorOf>
      <url>{empty_repository.as_uri()}</url>
    </mirror>
  </mirrors>
</settings>
"""
