-- vw_orders: one row per order, without personal data: vw_order_summary less the customer's name.
--
-- What the dashboard's readers and Synapse get (docs/operations.md, "Who may read what"): the customer is
-- named only by customer_id. vw_order_summary, which joins the name from silver_customers, is for the
-- command API app and the jobs, which hold SELECT on the schema.
CREATE OR REPLACE VIEW ${catalog}.${schema}.vw_orders AS
SELECT
  o.order_id,
  o.customer_id,
  o.status,
  o.total_amount,
  o.item_count,
  o.created_at AS created_date,
  o.updated_at AS updated_date
FROM ${catalog}.${schema}.silver_orders AS o
