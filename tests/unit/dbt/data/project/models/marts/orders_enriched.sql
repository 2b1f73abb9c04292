select o.*, c.first_name
from {{ ref('stg_orders') }} o
left join {{ ref('stg_customers') }} c using (customer_id)
