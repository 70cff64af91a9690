-- Seed example 4: endpoints that started a session in the last 24 hours.
with window_bounds as (
    select
        {{ timestamp_add('hour', -24, as_of()) }} as starts_at,
        {{ as_of() }} as ends_at
),

sessions as (
    select session_start.endpoint_id
    from {{ ref('stg_due__session_start') }} as session_start
    cross join window_bounds
    where {{ ingest_window(hours=24, column='session_start.ingest_timestamp') }}
      and session_start.event_timestamp > window_bounds.starts_at
      and session_start.event_timestamp <= window_bounds.ends_at
),

final as (
    select distinct
        endpoint_id,
        'Yes' as logged_in_last_24h
    from sessions
    where endpoint_id is not null
)

select * from final
