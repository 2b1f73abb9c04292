select id, amount from {{ ref('relations', 'orders') }}
