{#- The sources are atomic.events and its web_page context table, as the Snowplow loader writes
    them; with var use_seeds the seed stands in (it has no context table). -#}
{%- if var('use_seeds', false) %}
select
    event_id,
    collector_tstamp::timestamp as viewed_at,
    domain_userid,
    domain_sessionid as session_id,
    page_urlpath,
    nullif(user_id, '') as user_id,
    null::text as page_view_id
from {{ ref('snowplow_events') }}
where event_name = 'page_view'
{%- else %}
select
    e.event_id::text as event_id,
    e.collector_tstamp as viewed_at,
    e.domain_userid,
    e.domain_sessionid as session_id,
    e.page_urlpath,
    nullif(e.user_id, '') as user_id,
    w.id::text as page_view_id
from {{ source('snowplow', 'events') }} as e
left join {{ source('snowplow', 'web_page') }} as w
    on w.root_id = e.event_id and w.root_tstamp = e.collector_tstamp
where e.event_name = 'page_view'
{%- endif %}
