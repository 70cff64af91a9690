-- Seed example 3: unengaged contacts, labelled with the state they live in.
-- Unengaged = fewer than 2 email clicks, fewer than 2 app logins and fewer
-- than 2 web sessions in the last 6 months. The seed's SQL put the 6-month
-- filters in WHERE after LEFT JOINs, which removes exactly the contacts with
-- no activity; here activity is counted per contact first, and a contact
-- with none counts 0.
with window_bounds as (
    select
        {{ timestamp_add('month', -6, as_of()) }} as starts_at,
        {{ as_of() }} as ends_at
),

contacts as (
    select contact_id, endpoint_id, username, state
    from {{ ref('stg_crm__contacts') }}
),

clicks as (
    select endpoint_id, count(*) as n
    from {{ ref('stg_due__email_click') }}
    cross join window_bounds
    where {{ ingest_window(months=6) }}
      and event_timestamp > window_bounds.starts_at
      and event_timestamp <= window_bounds.ends_at
    group by endpoint_id
),

logins as (
    select username, count(*) as n
    from {{ ref('stg_crm__app_logins') }}
    cross join window_bounds
    where login_timestamp > window_bounds.starts_at
      and login_timestamp <= window_bounds.ends_at
    group by username
),

web_sessions as (
    select contact_id, count(*) as n
    from {{ ref('stg_crm__web_sessions') }}
    cross join window_bounds
    where session_timestamp > window_bounds.starts_at
      and session_timestamp <= window_bounds.ends_at
    group by contact_id
),

final as (
    select
        contacts.endpoint_id,
        contacts.state as unengaged_state
    from contacts
    left join clicks on clicks.endpoint_id = contacts.endpoint_id
    left join logins on logins.username = contacts.username
    left join web_sessions on web_sessions.contact_id = contacts.contact_id
    where coalesce(clicks.n, 0) < 2
      and coalesce(logins.n, 0) < 2
      and coalesce(web_sessions.n, 0) < 2
      and contacts.state is not null
)

select * from final
