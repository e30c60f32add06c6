-- vw_order_summary for Synapse serverless SQL: one row per order with its customer's name, read straight
-- from the silver Delta folders the projection writes. Deploy with sql/synapse/deploy.sh, which fills in
-- $(StorageUrl) (the warehouse folder, e.g. https://<account>.dfs.core.windows.net/<container>/<path>).
--
-- LEFT JOIN, not the seed's inner JOIN: an order can be projected before its customer (different event
-- partitions) or the customer's event may be quarantined; the order must not vanish silently, so it keeps
-- customer_name NULL until the customer arrives. created_date / updated_date carry the UTC timestamps.
--
-- WITH (...) declares the columns read: strings as UTF-8 with a binary collation (what the Delta/Parquet
-- files hold; exact and fast joins), money as DECIMAL(18,2), Delta timestamps as DATETIME2 (UTC).
CREATE OR ALTER VIEW dbo.vw_order_summary AS
SELECT
    o.order_id,
    o.customer_id,
    c.customer_name,
    o.status,
    o.total_amount,
    o.item_count,
    o.created_at AS created_date,
    o.updated_at AS updated_date
FROM OPENROWSET(
    BULK '$(StorageUrl)/silver_orders/',
    FORMAT = 'DELTA'
) WITH (
    order_id VARCHAR(100) COLLATE Latin1_General_100_BIN2_UTF8,
    customer_id VARCHAR(100) COLLATE Latin1_General_100_BIN2_UTF8,
    status VARCHAR(20) COLLATE Latin1_General_100_BIN2_UTF8,
    total_amount DECIMAL(18, 2),
    item_count BIGINT,
    created_at DATETIME2(7),
    updated_at DATETIME2(7)
) AS o
LEFT JOIN OPENROWSET(
    BULK '$(StorageUrl)/silver_customers/',
    FORMAT = 'DELTA'
) WITH (
    customer_id VARCHAR(100) COLLATE Latin1_General_100_BIN2_UTF8,
    customer_name VARCHAR(400) COLLATE Latin1_General_100_BIN2_UTF8
) AS c
    ON o.customer_id = c.customer_id;
