{{ config(materialized='view', tags=['events']) }}
-- Reads a source that does not exist in the fixture database: never built in the fixture run.
select * from {{ source('snowplow', 'events') }}
