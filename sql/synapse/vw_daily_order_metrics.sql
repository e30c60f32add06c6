-- vw_daily_order_metrics for Synapse serverless SQL: orders and revenue per day, read from the silver_orders
-- Delta table the bundle creates under its synapse_storage_url, through the data source of setup.sql. Deploy
-- with sql/synapse/deploy.sh.
--
-- The same definition as the Databricks view and the gold table gold_daily_order_metrics: orders whose
-- status is not 'Cancelled', grouped by the (UTC) day of created_at; money as DECIMAL(18,2) (a day's revenue DECIMAL(38,2)), the average
-- rounded to cents.
CREATE OR ALTER VIEW cqrs_orders.vw_daily_order_metrics AS
SELECT
    CAST(o.created_at AS DATE) AS order_date,
    COUNT_BIG(*) AS order_count,
    CAST(SUM(o.total_amount) AS DECIMAL(38, 2)) AS total_revenue,
    CAST(AVG(o.total_amount) AS DECIMAL(18, 2)) AS avg_order_value,
    COUNT_BIG(DISTINCT o.customer_id) AS unique_customers
FROM OPENROWSET(
    BULK 'silver_orders/',
    DATA_SOURCE = 'cqrs_orders_lake',
    FORMAT = 'DELTA'
) WITH (
    customer_id VARCHAR(512) COLLATE Latin1_General_100_BIN2_UTF8,
    status VARCHAR(20) COLLATE Latin1_General_100_BIN2_UTF8,
    total_amount DECIMAL(18, 2),
    created_at DATETIME2(7)
) AS o
WHERE o.status <> 'Cancelled'
GROUP BY CAST(o.created_at AS DATE);
