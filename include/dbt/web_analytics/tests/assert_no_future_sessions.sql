{#- Fails when a session starts in the future -- or on demand with var fail_test, so the
    runner's failure and retry paths can be exercised with a real failing test. -#}
select session_id, session_start
from {{ ref('sessions') }}
where session_start > now()
{%- if var('fail_test', false) %}
   or true
{%- endif %}
