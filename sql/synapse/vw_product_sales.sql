-- vw_product_sales for Synapse serverless SQL: sales per product and currency (units, revenue, the orders
-- that hold it, the latest sale), read from the silver_product_sales Delta table the bundle creates under
-- its synapse_storage_url. Deploy with sql/synapse/deploy.sh, after setup.sql.
--
-- The table's own columns, as the API's GET /products/{sku} and the dashboard's top products read them; no
-- personal data. Revenue is a sum of order lines: DECIMAL(38,2), as the table stores it, digit for digit.
CREATE OR ALTER VIEW cqrs_orders.vw_product_sales AS
SELECT
    p.sku,
    p.currency,
    p.units,
    p.revenue,
    p.orders,
    p.last_sale_at
FROM OPENROWSET(
    BULK 'silver_product_sales/',
    DATA_SOURCE = 'cqrs_orders_lake',
    FORMAT = 'DELTA'
) WITH (
    sku VARCHAR(512) COLLATE Latin1_General_100_BIN2_UTF8,
    currency VARCHAR(3) COLLATE Latin1_General_100_BIN2_UTF8,
    units BIGINT,
    revenue DECIMAL(38, 2),
    orders BIGINT,
    last_sale_at DATETIME2(7)
) AS p;
