-- vw_order_summary: one row per order with its customer's name (order lookups, BI).
--
-- LEFT JOIN, not the seed's inner JOIN: orders and customers travel through different partitions of the
-- event bus, so an order can be projected before its customer (or the customer's event was quarantined).
-- An inner join would make such an order vanish silently; here it stays visible with customer_name NULL
-- until the customer arrives.
--
-- created_date / updated_date keep the seed's names but carry the full UTC timestamp (created_at /
-- updated_at): per-order questions need the time of day; cast to DATE to group by day.
CREATE OR REPLACE VIEW ${catalog}.${schema}.vw_order_summary AS
SELECT
  o.order_id,
  o.customer_id,
  c.customer_name,
  o.status,
  o.total_amount,
  o.item_count,
  o.created_at AS created_date,
  o.updated_at AS updated_date
FROM ${catalog}.${schema}.silver_orders AS o
LEFT JOIN ${catalog}.${schema}.silver_customers AS c
  ON o.customer_id = c.customer_id
