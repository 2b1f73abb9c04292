select
    user_id,
    lower(email) as email,
    full_name,
    plan,
    lifetime_value
from {{ ref('crm_contacts') }}
