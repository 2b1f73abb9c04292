-- Named like the folder models/marts/: `fqn:relations.marts` alone would select its models too.
select count(*) as n from {{ ref('relations', 'orders') }}
