{{ config(unique_key='user_id') }}

with activity as (
    select
        user_id,
        count(*) as sessions,
        sum(page_views) as page_views,
        max(session_end) as last_seen_at
    from {{ ref('sessions') }}
    where user_id is not null
    group by user_id
)

select
    c.user_id,
    c.email,
    c.full_name,
    c.plan,
    c.lifetime_value,
    a.sessions,
    a.page_views,
    a.last_seen_at
from {{ ref('stg_contacts') }} as c
join activity as a on a.user_id = c.user_id
where c.lifetime_value >= 1000 or a.sessions >= 2
