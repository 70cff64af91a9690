-- Seed example 1: every endpoint that has clicked an email within the lookback
-- window (var lookback_days) up to as_of. Clicks after as_of never count, so a
-- pinned or backfill run sees what a run at that instant would have seen.
with window_bounds as (
    select
        {{ timestamp_add('day', -1 * var('lookback_days'), as_of()) }} as starts_at,
        {{ as_of() }} as ends_at
),

clicks as (
    select email_click.endpoint_id
    from {{ ref('stg_due__email_click') }} as email_click
    cross join window_bounds
    where {{ ingest_window(days=var('lookback_days'), column='email_click.ingest_timestamp') }}
      and email_click.event_timestamp > window_bounds.starts_at
      and email_click.event_timestamp <= window_bounds.ends_at
      and email_click.endpoint_id is not null
),

final as (
    select distinct
        endpoint_id,
        'Yes' as has_clicked
    from clicks
)

select * from final
