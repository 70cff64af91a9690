-- Seed example 1: every endpoint that has clicked an email.
with clicks as (
    select endpoint_id
    from {{ ref('stg_due__email_click') }}
    where endpoint_id is not null
),

final as (
    select distinct
        endpoint_id,
        'Yes' as has_clicked
    from clicks
)

select * from final
