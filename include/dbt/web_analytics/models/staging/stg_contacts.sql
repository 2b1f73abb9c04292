{#- The source is raw_crm.contacts, which the replicate_crm Singer step copies from the CRM's
    database; with var use_seeds the seed crm_contacts stands in. -#}
select
    user_id,
    lower(email) as email,
    full_name,
    plan,
    lifetime_value
{%- if var('use_seeds', false) %}
from {{ ref('crm_contacts') }}
{%- else %}
from {{ source('crm', 'contacts') }}
{%- endif %}
