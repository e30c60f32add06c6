-- silver_event_history: every event once (its first arrival), with version conflicts flagged.
--
-- A view over bronze_events, not a table: bronze already holds every valid event, so a second
-- deduplicating write per micro-batch only copied it (and was the largest write of a batch). The
-- conflict flag is computed here, over the whole history, at read time.
--
-- first arrival: the earliest ingest, then the bus position (bronze keeps redeliveries as they came).
-- version_conflict: more than one distinct event claims the aggregate's version (min < max of their ids).
CREATE OR REPLACE VIEW ${catalog}.${schema}.silver_event_history AS
SELECT
  event_id,
  event_type,
  aggregate_type,
  aggregate_id,
  version,
  event_time,
  correlation_id,
  causation_id,
  `partition` AS source_partition,
  `offset` AS source_offset,
  ingest_time,
  min(event_id) OVER claims < max(event_id) OVER claims AS version_conflict
FROM (
  SELECT
    *,
    row_number() OVER (PARTITION BY event_id ORDER BY ingest_time, `partition`, `offset`) AS arrival
  FROM ${catalog}.${schema}.bronze_events
) AS arrivals
WHERE arrival = 1
WINDOW claims AS (PARTITION BY aggregate_type, aggregate_id, version)
