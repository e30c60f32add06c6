"""Checks a rebuilt generation of the read models against the bronze snapshot it was built from, before any
reader sees it.

Per latest-state read model (one row per aggregate): every aggregate of its type in bronze has exactly one
row and no row lacks an aggregate (counts); each row holds the aggregate's highest version in bronze; and the
version-gap measure (aggregates whose highest version exceeds their number of distinct versions, the lag
monitor's sign of a lost event) is the same counted over the rows as over bronze. An aggregation is computed
whole from its checked source in the same run, and gold from ``silver_orders``; they have no bronze figure of
their own to compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cqrs_orders.pipeline.read_models import LATEST_STATE_MODELS


@dataclass(frozen=True)
class Figures:
    """One read model's figures against bronze; :attr:`differences` is empty when they agree."""

    table: str
    aggregates: int
    rows: int
    duplicate_keys: int
    missing: int
    unexpected: int
    wrong_version: int
    bronze_gaps: int
    row_gaps: int
    example: str | None

    @property
    def differences(self) -> list[str]:
        found = [
            f"{count} {what}"
            for count, what in (
                (self.missing, "aggregates of bronze without a row"),
                (self.unexpected, "rows without an aggregate in bronze"),
                (self.duplicate_keys, "keys held by more than one row"),
                (self.wrong_version, "rows not at their aggregate's highest version"),
            )
            if count
        ]
        if self.row_gaps != self.bronze_gaps:
            found.append(f"{self.row_gaps} version gaps where bronze has {self.bronze_gaps}")
        if found and self.example is not None:
            found.append(f"e.g. {self.example}")
        return found

    def summary(self) -> dict[str, int]:
        return {"aggregates": self.aggregates, "rows": self.rows, "version_gaps": self.row_gaps}


def check(bronze: DataFrame, generation: dict[str, DataFrame]) -> list[Figures]:
    """The figures of every latest-state read model of ``generation`` (table -> rows) against ``bronze``."""
    return [_figures(bronze, model, generation[model.table]) for model in LATEST_STATE_MODELS]


def _figures(bronze: DataFrame, model, rows: DataFrame) -> Figures:
    (key,) = model.key
    events = (
        bronze.where(F.col("aggregate_type") == model.aggregate_type.value)
        .groupBy("aggregate_id")
        .agg(F.max("version").alias("top"), F.count_distinct("version").alias("versions"))
    )
    held = rows.groupBy(F.col(key).alias("aggregate_id")).agg(
        F.max("version").alias("held"), F.count(F.lit(1)).alias("copies")
    )
    top, held_version, versions = F.col("top"), F.col("held"), F.col("versions")
    missing, unexpected = held_version.isNull() & top.isNotNull(), top.isNull()
    wrong = top.isNotNull() & held_version.isNotNull() & (top != held_version)
    figures = (
        events.join(held, "aggregate_id", "full_outer")
        .agg(
            F.count(top).alias("aggregates"),
            F.coalesce(F.sum("copies"), F.lit(0)).alias("rows"),
            F.count_if(F.col("copies") > 1).alias("duplicate_keys"),
            F.count_if(missing).alias("missing"),
            F.count_if(unexpected).alias("unexpected"),
            F.count_if(wrong).alias("wrong_version"),
            F.count_if(top > versions).alias("bronze_gaps"),
            F.count_if(held_version > versions).alias("row_gaps"),
            F.min(F.when(missing | unexpected | wrong | (F.col("copies") > 1), F.col("aggregate_id"))).alias(
                "example"
            ),
        )
        .first()
    )
    return Figures(table=model.table, **figures.asDict())
