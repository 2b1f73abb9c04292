{{ config(tags=['finance'], alias='customer_totals_v1') }}
select c.customer_id, c.first_name, coalesce(t.total, 0) as total, coalesce(t.orders, 0) as orders
from {{ ref('stg_customers') }} c
left join {{ ref('int_order_totals') }} t using (customer_id)
