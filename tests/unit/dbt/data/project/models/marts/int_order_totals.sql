{{ config(materialized='ephemeral') }}
select customer_id, sum(amount) as total, count(*) as orders
from {{ ref('stg_orders') }}
where status = 'completed'
group by customer_id
