-- vw_orders for Synapse serverless SQL: one row per order, without personal data (the customer is named only
-- by customer_id), read from the silver_orders Delta table the bundle creates under its
-- synapse_storage_url. Deploy with sql/synapse/deploy.sh, after setup.sql (the data source and its credential).
--
-- The same definition as the Databricks view vw_orders. Synapse gets no customer names: whatever lies under
-- the data source's folder, a caller holding REFERENCES on its credential can read with OPENROWSET, so
-- silver_customers is kept out of it.
--
-- WITH (...) declares the columns read: strings as UTF-8 with a binary collation (what the Delta/Parquet
-- files hold; exact and fast joins), ids as VARCHAR(512): a VARCHAR's length counts UTF-8 bytes, and an id
-- may be 128 characters of up to 4 bytes each, money as DECIMAL(18,2), Delta timestamps as DATETIME2 (UTC).
CREATE OR ALTER VIEW cqrs_orders.vw_orders AS
SELECT
    o.order_id,
    o.customer_id,
    o.status,
    o.total_amount,
    o.item_count,
    o.created_at AS created_date,
    o.updated_at AS updated_date
FROM OPENROWSET(
    BULK 'silver_orders/',
    DATA_SOURCE = 'cqrs_orders_lake',
    FORMAT = 'DELTA'
) WITH (
    order_id VARCHAR(512) COLLATE Latin1_General_100_BIN2_UTF8,
    customer_id VARCHAR(512) COLLATE Latin1_General_100_BIN2_UTF8,
    status VARCHAR(20) COLLATE Latin1_General_100_BIN2_UTF8,
    total_amount DECIMAL(18, 2),
    item_count BIGINT,
    created_at DATETIME2(7),
    updated_at DATETIME2(7)
) AS o;
