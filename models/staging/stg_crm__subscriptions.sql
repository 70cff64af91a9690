with source as (
    select * from {{ source('crm', 'subscriptions') }}
),

renamed as (
    select
        subscription_id,
        contact_id,
        plan,
        cast(start_date as date) as start_date,
        cast(end_date as date) as end_date,
        cast(auto_renewal as boolean) as is_auto_renewal,
        cast(missed_payments as integer) as missed_payments
    from source
)

select * from renamed
