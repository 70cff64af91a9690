{#-
  Generic tests for Amazon Pinpoint's data rules. Each returns the failing
  rows (the id and the offending value), so a failure names the model, the
  column and the rule, and `dbt test --store-failures` keeps the evidence.
-#}

{#- Pinpoint: an attribute value is at most 100 characters. -#}
{% test pinpoint_max_length(model, column_name, max_length=100) %}
select {{ column_name }} as failing_value, length(cast({{ column_name }} as varchar)) as value_length
from {{ model }}
where length(cast({{ column_name }} as varchar)) > {{ max_length }}
{% endtest %}


{#- Pinpoint's user guide: line breaks and tabs in a value make an import fail. Refused: every
    C0/C1 control character (NUL, vertical tab, NEL, ...), DEL and U+2028/U+2029. -#}
{% test pinpoint_no_control_chars(model, column_name) %}
select {{ column_name }} as failing_value
from {{ model }}
where {{ contains_control_chars('cast(' ~ column_name ~ ' as varchar)') }}
{% endtest %}


{#- Pinpoint: Metrics.* values are numbers. -#}
{% test pinpoint_numeric(model, column_name) %}
select {{ column_name }} as failing_value
from {{ model }}
where {{ column_name }} is not null
  and {{ try_to_double(column_name) }} is null
{% endtest %}


{#- Pinpoint: ChannelType and OptOut take a fixed set of values. -#}
{% test pinpoint_accepted_values(model, column_name, values) %}
select {{ column_name }} as failing_value
from {{ model }}
where {{ column_name }} is not null
  and cast({{ column_name }} as varchar) not in (
    {%- for v in values %}'{{ v }}'{{ ", " if not loop.last }}{% endfor -%}
  )
{% endtest %}


{#- Splits: the realised share of each group (percent of rows) is within `tolerance` percentage points of
    `shares` ({A: 45, B: 45, holdout: 10}); a group that should exist but has no rows, or a value that is
    not a group, fails too. Returns one row per group out of tolerance. -#}
{% test split_shares(model, column_name, shares, tolerance=2) %}
with expected as (
    {%- for name, pct in shares.items() %}
    select '{{ name }}' as split_group, cast({{ pct }} as double) as expected_pct
    {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
),

realised as (
    select cast({{ column_name }} as varchar) as split_group,
           100.0 * count(*) / sum(count(*)) over () as realised_pct
    from {{ model }}
    group by 1
)

select coalesce(expected.split_group, realised.split_group) as split_group,
       expected.expected_pct,
       coalesce(realised.realised_pct, 0) as realised_pct
from expected
full outer join realised on realised.split_group = expected.split_group
where expected.split_group is null
   or abs(coalesce(realised.realised_pct, 0) - expected.expected_pct) > {{ tolerance }}
{% endtest %}
