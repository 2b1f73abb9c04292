select
    session_id,
    min(domain_userid) as domain_userid,
    max(user_id) as user_id,
    min(viewed_at) as session_start,
    max(viewed_at) as session_end,
    count(*) as page_views,
    max(case when page_view_in_session = 1 then page_urlpath end) as landing_page
from {{ ref('int_page_views_numbered') }}
group by session_id
