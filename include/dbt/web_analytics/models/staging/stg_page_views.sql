{#- The source is atomic.events (Snowplow loader); with var use_seed_events the seed stands in. -#}
{%- if var('use_seed_events', false) -%}
    {%- set events = ref('snowplow_events') -%}
{%- else -%}
    {%- set events = source('snowplow', 'events') -%}
{%- endif -%}

select
    event_id,
    collector_tstamp::timestamp as viewed_at,
    domain_userid,
    domain_sessionid as session_id,
    page_urlpath,
    nullif(user_id, '') as user_id
from {{ events }}
where event_name = 'page_view'
