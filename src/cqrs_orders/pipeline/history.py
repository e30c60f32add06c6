"""The event history: every event once, version conflicts flagged, as a view over ``bronze_events``.

Its one definition is the shipped view ``silver_event_history`` (``query/sql/silver_event_history.sql``):
``cqrs-orders create-views`` creates it in Unity Catalog and :func:`~cqrs_orders.query.views.register_views`
locally; Python readers get the same query over a bronze DataFrame here. Nothing writes the history, so a
micro-batch does not pay for it and a rebuild has nothing to recompute.

Events of every schema version are listed alike: the history is the envelope's header, which no version
changes, and bronze keeps each body as it arrived. A reader of a listed event's ``data`` brings it to the
current schema as every reader does (:func:`cqrs_orders.envelope.upcast_event`, or on Spark
:meth:`~.read_models.ReadModel.parse_state`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from cqrs_orders.config import EVENT_HISTORY, Settings
from cqrs_orders.delta_io import table
from cqrs_orders.query.views import view_definition

VIEW = EVENT_HISTORY


def event_history(bronze: DataFrame) -> DataFrame:
    """The view's rows over ``bronze`` (``bronze_events`` rows: the table, a snapshot of it, or a batch)."""
    query = f"WITH bronze_events AS (SELECT * FROM {{bronze}})\n{view_definition(VIEW).select_sql()}"
    return bronze.sparkSession.sql(query, bronze=bronze)


def read_event_history(spark, settings: Settings) -> DataFrame:
    """The warehouse's event history (the view over its ``bronze_events``)."""
    return event_history(table(settings, "bronze_events").read(spark))


def read_output(spark, settings: Settings, name: str) -> DataFrame:
    """What the pipeline gives readers, by logical name: one of its tables, or the event history."""
    return read_event_history(spark, settings) if name == VIEW else table(settings, name).read(spark)
