{{ config(alias="dim_customers") }}
select 1 as customer_id
