with source as (
    select * from {{ source('crm', 'contacts') }}
),

renamed as (
    select
        id as contact_id,
        id as endpoint_id,
        username,
        email,
        first_name,
        last_name,
        upper(state) as state,
        cast(created_at as timestamp) as created_at
    from source
)

select * from renamed
