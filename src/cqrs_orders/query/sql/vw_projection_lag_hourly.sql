-- vw_projection_lag_hourly: projection lag over time, one row per projection and UTC hour (dashboards).
-- The lag monitor appends one row per projection per run (every few minutes); this keeps the worst and
-- the average of each hour and how many runs breached a threshold.
CREATE OR REPLACE VIEW ${catalog}.${schema}.vw_projection_lag_hourly AS
SELECT
  date_trunc('HOUR', run_at) AS hour,
  projection,
  count(*) AS measurements,
  max(event_time_lag_seconds) AS max_event_time_lag_seconds,
  avg(event_time_lag_seconds) AS avg_event_time_lag_seconds,
  max(bus_backlog + bronze_backlog) AS max_backlog,
  max(staleness_seconds) AS max_staleness_seconds,
  max(version_gaps) AS max_version_gaps,
  count(*) FILTER (WHERE NOT healthy) AS unhealthy_measurements
FROM ${catalog}.${schema}.ops_projection_lag
GROUP BY date_trunc('HOUR', run_at), projection
