-- vw_projection_lag: the latest lag measurement per projection (what on-call looks at first).
CREATE OR REPLACE VIEW ${catalog}.${schema}.vw_projection_lag AS
SELECT
  run_at,
  projection,
  event_time_lag_seconds,
  bus_backlog,
  bronze_backlog,
  staleness_seconds,
  version_gaps,
  threshold_seconds,
  healthy,
  breaches
FROM (
  SELECT *, row_number() OVER (PARTITION BY projection ORDER BY run_at DESC) AS measurement_rank
  FROM ${catalog}.${schema}.ops_projection_lag
) AS ranked
WHERE measurement_rank = 1
