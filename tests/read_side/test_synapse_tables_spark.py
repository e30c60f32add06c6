"""The tables Synapse reads are created at ``<schema's Synapse storage URL>/<table>`` (external tables), on
local Spark with the session catalog standing in for Unity Catalog and a file: URL for the location."""

from __future__ import annotations

from cqrs_orders.config import Settings
from cqrs_orders.pipeline.tables import (
    SYNAPSE_STORAGE_PROPERTY,
    SYNAPSE_TABLES,
    ensure_tables,
    synapse_storage_url,
)


def _location(spark, name: str) -> str:
    return spark.sql(f"DESCRIBE DETAIL {name}").first()["location"].rstrip("/")


def test_the_synapse_tables_are_created_at_the_schemas_storage_url(spark, tmp_path):
    url = (tmp_path / "lake" / "cqrs").as_uri()  # file:///.../lake/cqrs
    schema = "cqrs_synapse_test"
    spark.sql(
        f"CREATE SCHEMA spark_catalog.{schema} LOCATION '{tmp_path / 'managed'}' "
        f"WITH DBPROPERTIES ('{SYNAPSE_STORAGE_PROPERTY}' = '{url}')"
    )
    settings = Settings.from_env(env={"CQRS_CATALOG": "spark_catalog", "CQRS_SCHEMA": schema})
    try:
        assert synapse_storage_url(spark, settings) == url
        ensure_tables(spark, settings)
        for name in SYNAPSE_TABLES:
            assert _location(spark, f"spark_catalog.{schema}.{name}") == f"{url}/{name}".replace(
                "file:///", "file:/"
            )
        # The others stay where the catalog puts them: nothing but Synapse's tables lands under the URL.
        assert not _location(spark, f"spark_catalog.{schema}.silver_customers").startswith(
            url.replace("file:///", "file:/")
        )
    finally:
        spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{schema} CASCADE")


def test_without_the_property_every_table_is_managed(spark, tmp_path):
    schema = "cqrs_managed_test"
    spark.sql(f"CREATE SCHEMA spark_catalog.{schema} LOCATION '{tmp_path}'")
    try:
        settings = Settings.from_env(env={"CQRS_CATALOG": "spark_catalog", "CQRS_SCHEMA": schema})
        assert synapse_storage_url(spark, settings) is None
    finally:
        spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{schema} CASCADE")
