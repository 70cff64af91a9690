-- Experiment example: every contact, split for the November newsletter test
-- into A 45% / B 45% / holdout 10% by a salted hash of the endpoint id
-- (macros/split.sql): the same assignment on every run and on DuckDB and
-- Athena. The holdout is exported as its own value, so campaigns target
-- NewsletterGroup A or B and analysts compare them with the holdout.
with contacts as (
    select endpoint_id
    from {{ ref('stg_crm__contacts') }}
    where endpoint_id is not null
),

final as (
    select
        endpoint_id,
        {{ split_group('endpoint_id', 'newsletter-2026-11', [['A', 45], ['B', 45], ['holdout', 10]]) }}
            as newsletter_group
    from contacts
)

select * from final
