with source as (
    select * from {{ source('crm', 'web_sessions') }}
),

renamed as (
    select
        session_id,
        user_id as contact_id,
        cast(session_timestamp as timestamp) as session_timestamp,
        page_views,
        traffic_source
    from source
)

select * from renamed
