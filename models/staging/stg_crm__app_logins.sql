with source as (
    select * from {{ source('crm', 'app_logins') }}
),

renamed as (
    select
        login_id,
        username,
        cast(login_timestamp as timestamp) as login_timestamp,
        client
    from source
)

select * from renamed
