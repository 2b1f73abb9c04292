{#- Use a custom schema name as is (`marts`, not `<target schema>_marts`), so tables have the
    stable names other pipelines refer to, e.g. marts.high_value_users. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
