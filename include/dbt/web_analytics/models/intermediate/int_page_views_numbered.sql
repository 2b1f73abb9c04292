{#- Ephemeral: inlined as a CTE into the marts, never a table of its own. -#}
select
    *,
    row_number() over (partition by session_id order by viewed_at, event_id) as page_view_in_session
from {{ ref('stg_page_views') }}
