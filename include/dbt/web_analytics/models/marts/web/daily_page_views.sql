{{ config(tags=['daily']) }}

select
    viewed_at::date as view_date,
    page_urlpath,
    count(*) as page_views,
    count(distinct domain_userid) as visitors
from {{ ref('stg_page_views') }}
group by 1, 2
