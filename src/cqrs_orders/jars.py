"""The Delta Lake and Kafka connector jars for local Spark, fetched once and cached.

The Delta jar is built per Spark minor version, so the Maven coordinates are derived from the installed
``pyspark`` and ``delta-spark`` versions. Delta named that artifact two ways: up to 4.0 one artifact per
Scala version (``io.delta:delta-spark_2.13:4.0.0``), from 4.1 on one per Spark minor as well
(``io.delta:delta-spark_4.1_2.13:4.4.0``); :func:`delta_artifact` picks the one that exists, so any pair
starts: the pinned local one and Databricks Runtime 18's line (Spark 4.1 with Delta 4.1.0). Resolution order:

1. the cache folder (``CQRS_JARS_DIR``, default ``~/.cache/cqrs-orders/jars/spark-X-delta-Y``, one per pair);
2. Maven (``mvn dependency:copy-dependencies``), which honours the user's Maven settings (mirrors, proxies);
3. Spark's own resolver (``configure_spark_with_delta_pip``), used by :mod:`cqrs_orders.spark` when Maven
   is not installed.

Jars that pyspark already ships are left out, so the classpath has one copy of each library.
"""

from __future__ import annotations

import fcntl
import logging
import re
import shutil
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path

import pyspark

from cqrs_orders.config import value_of
from cqrs_orders.errors import SparkUnavailableError

log = logging.getLogger(__name__)

SCALA_VERSION = "2.13"
#: The first Delta release published per Spark minor (``delta-spark_<spark minor>_<scala>``).
FIRST_DELTA_PER_SPARK_MINOR = (4, 1)
_MARKER = ".complete"


def delta_artifact(delta_version: str, spark_version: str) -> str:
    """The Maven artifact id of Delta ``delta_version`` built for Spark ``spark_version``.

    Delta 4.0 and older exist only as ``delta-spark_<scala>`` (each release supports one Spark line);
    asking for ``delta-spark_4.0_2.13:4.0.0`` fails, which is what kept the runtime's pair from starting.
    """
    if _release(delta_version) < FIRST_DELTA_PER_SPARK_MINOR:
        return f"delta-spark_{SCALA_VERSION}"
    spark_minor = ".".join(spark_version.split(".")[:2])
    return f"delta-spark_{spark_minor}_{SCALA_VERSION}"


def maven_coordinates(spark_version: str | None = None, delta_version: str | None = None) -> list[str]:
    """``group:artifact:version`` of the Delta and Kafka connector jars; by default for the installed pair.

    The Kafka connector is released with Spark itself, so its version is exactly the installed pyspark's.
    """
    spark_version = spark_version or pyspark.__version__
    delta_version = delta_version or version("delta-spark")
    return [
        f"io.delta:{delta_artifact(delta_version, spark_version)}:{delta_version}",
        f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_VERSION}:{spark_version}",
    ]


def _release(version_text: str) -> tuple[int, int]:
    """``4.0.0`` / ``4.1.0rc1`` -> ``(4, 0)`` / ``(4, 1)``."""
    numbers = re.findall(r"\d+", version_text)[:2]
    major, minor = (int(n) for n in [*numbers, "0", "0"][:2])
    return major, minor


def cache_dir() -> Path:
    configured = value_of("jars_dir")
    if configured:
        return Path(configured).expanduser()
    name = f"spark-{pyspark.__version__}-delta-{version('delta-spark')}"
    return Path.home() / ".cache" / "cqrs-orders" / "jars" / name


def cached_jars(folder: Path | None = None) -> list[str] | None:
    folder = folder or cache_dir()
    if not (folder / _MARKER).exists():
        return None
    return sorted(str(path) for path in folder.glob("*.jar"))


def cached_or_fetched(coordinates: list[str] | None = None, folder: Path | None = None) -> list[str]:
    """The cached jars, fetched with Maven first when the cache is empty.

    By default the installed pair's (:func:`maven_coordinates`, :func:`cache_dir`); the projection
    benchmark's AUTO CDC peer names its own, since its environment has no ``delta-spark`` package to derive
    them from.

    One process fetches while the others wait on a lock beside the cache folder and then read what it
    fetched: two Spark sessions starting at once (two test workers, two jobs on one machine) would otherwise
    copy jars over each other, and one could start on a jar the other was still writing."""
    folder = folder or cache_dir()
    paths = cached_jars(folder)
    if paths is not None:
        return paths
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, however the process ends
        paths = cached_jars(folder)
        return paths if paths is not None else fetch_with_maven(coordinates, folder)


def fetch_with_maven(coordinates: list[str] | None = None, folder: Path | None = None) -> list[str]:
    """Copy the jars and their dependencies into the cache folder with Maven; return their paths."""
    coordinates, folder = coordinates or maven_coordinates(), folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # A warning, so it shows without logging set up: the first session waits on this for a minute or more.
    log.warning("Fetching %s with Maven into %s (first run only)", ", ".join(coordinates), folder)
    with tempfile.TemporaryDirectory(prefix="cqrs-jars-") as work:
        out = Path(work)
        copy_with_maven(coordinates, out)
        shipped = {_artifact(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
        for jar in out.glob("*.jar"):
            if _artifact(jar.name) not in shipped:
                shutil.copy2(jar, folder / jar.name)
    (folder / _MARKER).write_text("\n".join(coordinates) + "\n")
    return cached_jars(folder) or []


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
