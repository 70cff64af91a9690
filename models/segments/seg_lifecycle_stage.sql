-- Seed example 2: the Renewal lifecycle stage. A contact is up for renewal when
-- a subscription ends within the next 30 days, does not renew automatically,
-- and has no missed payments. (The seed's `end_date > now - 30 days` would
-- also match subscriptions that ended last month; this is what it means.)
with as_of as (
    select cast({{ as_of() }} as date) as as_of_date
),

renewals as (
    select distinct subscriptions.contact_id
    from {{ ref('stg_crm__subscriptions') }} as subscriptions
    cross join as_of
    where subscriptions.end_date >= as_of.as_of_date
      and subscriptions.end_date < cast({{ timestamp_add('day', 30, 'as_of.as_of_date') }} as date)
      and not subscriptions.is_auto_renewal
      and subscriptions.missed_payments = 0
),

final as (
    select
        contacts.endpoint_id,
        'Renewal' as lifecycle_stage
    from {{ ref('stg_crm__contacts') }} as contacts
    inner join renewals on renewals.contact_id = contacts.contact_id
)

select * from final
