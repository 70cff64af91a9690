-- A metric: how many emails each endpoint opened in the last 30 days.
with window_bounds as (
    select
        {{ timestamp_add('day', -30, as_of()) }} as starts_at,
        {{ as_of() }} as ends_at
),

opens as (
    select email_open.endpoint_id
    from {{ ref('stg_due__email_open') }} as email_open
    cross join window_bounds
    where {{ ingest_window(days=30, column='email_open.ingest_timestamp') }}
      and email_open.event_timestamp > window_bounds.starts_at
      and email_open.event_timestamp <= window_bounds.ends_at
      and email_open.endpoint_id is not null
),

final as (
    select
        endpoint_id,
        count(*) as emails_opened_30d
    from opens
    group by endpoint_id
)

select * from final
