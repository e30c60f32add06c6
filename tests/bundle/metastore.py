"""A local stand-in for Unity Catalog's tables: a Hive metastore service on a loopback port, shared by every
Spark process the bundle flow test starts.

Each job task is its own process with its own Spark session, as on Databricks, so table names must mean the
same thing in all of them: ``spark_catalog.<schema>.<table>`` resolves through this one metastore (Thrift,
embedded Derby behind it), and the schema's LOCATION is a local folder, so managed Delta tables land there.
The service is Hive's own ``HiveMetaStore``, run from the jars pyspark ships; processes reach it through a
``spark-defaults.conf`` in ``SPARK_CONF_DIR`` (:meth:`Metastore.spark_conf_dir`).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

_SITE = """<configuration>
  <property><name>javax.jdo.option.ConnectionURL</name>
    <value>jdbc:derby:;databaseName={folder}/metastore_db;create=true</value></property>
  <property><name>datanucleus.schema.autoCreateAll</name><value>true</value></property>
  <property><name>hive.metastore.schema.verification</name><value>false</value></property>
  <property><name>hive.metastore.warehouse.dir</name><value>{folder}/warehouse</value></property>
</configuration>
"""


class MetastoreUnavailable(RuntimeError):
    """The metastore service did not start; the message says why."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


class Metastore:
    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port

    @property
    def uri(self) -> str:
        return f"thrift://127.0.0.1:{self.port}"

    def spark_conf_dir(self) -> Path:
        """A ``SPARK_CONF_DIR`` whose ``spark-defaults.conf`` points Spark's session catalog here."""
        conf = self.folder / "spark-conf"
        conf.mkdir(exist_ok=True)
        (conf / "spark-defaults.conf").write_text(
            f"spark.sql.catalogImplementation hive\nspark.hadoop.hive.metastore.uris {self.uri}\n"
        )
        return conf


@contextmanager
def running_metastore(folder: Path, start_timeout: float = 120.0):
    """Start the service, wait until it accepts connections, yield a :class:`Metastore`, kill it after."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hive-site.xml").write_text(_SITE.format(folder=folder))
    port = _free_port()
    log4j = Path(__file__).resolve().parents[2] / "src" / "cqrs_orders" / "resources" / "log4j2.properties"
    command = [
        "java",
        f"-Dlog4j2.configurationFile=file:{log4j}",
        # Hive's jars ask for log4j's asynchronous context, whose disruptor library pyspark does not ship.
        "-Dlog4j2.contextSelector=org.apache.logging.log4j.core.selector.BasicContextSelector",
        "-cp",
        f"{folder}{os.pathsep}{_pyspark_jars()}/*",
        "org.apache.hadoop.hive.metastore.HiveMetaStore",
        "-p",
        str(port),
    ]
    log = (folder / "metastore.log").open("w")
    process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise MetastoreUnavailable(
                    f"the Hive metastore exited with {process.returncode}; see {folder / 'metastore.log'}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise MetastoreUnavailable(
                        f"the Hive metastore did not listen within {start_timeout:g} s"
                    ) from None
                time.sleep(0.5)
        logger.info("Hive metastore at thrift://127.0.0.1:%d (%s)", port, folder)
        yield Metastore(folder, port)
    finally:
        process.kill()
        process.wait(10)
        log.close()
