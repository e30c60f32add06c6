-- vw_daily_order_metrics: orders and revenue per day.
--
-- The same definition as the gold table gold_daily_order_metrics (keep them identical): orders whose
-- status is not 'Cancelled', grouped by the UTC day of created_at. Money stays decimal(18,2), a day's revenue decimal(38,2); the average
-- is rounded half up to cents.
CREATE OR REPLACE VIEW ${catalog}.${schema}.vw_daily_order_metrics AS
SELECT
  to_date(created_at) AS order_date,
  count(*) AS order_count,
  CAST(sum(total_amount) AS DECIMAL(38, 2)) AS total_revenue,
  CAST(avg(total_amount) AS DECIMAL(18, 2)) AS avg_order_value,
  count(DISTINCT customer_id) AS unique_customers
FROM ${catalog}.${schema}.silver_orders
WHERE status <> 'Cancelled'
GROUP BY to_date(created_at)
