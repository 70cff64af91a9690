-- The portable-SQL macros, checked on literal values on whichever engine runs
-- `dbt build` (DuckDB locally, Athena in production). Returns failing cases.
-- The split cases' expected buckets and groups come from Python's hashlib
-- (tests/sync/test_split_literals.py recomputes them), so passing here on
-- either engine means the engine assigns ids exactly as Python does.
with cases as (
    select
        'epoch_ms_to_timestamp' as macro_name,
        cast({{ epoch_ms_to_timestamp('1776273651267') }} as varchar) as got,
        cast(timestamp '2026-04-15 17:20:51.267' as varchar) as expected
    union all
    select 'timestamp_add day', cast({{ timestamp_add('day', -30, "timestamp '2026-11-01 00:00:00'") }} as varchar),
           cast(timestamp '2026-10-02 00:00:00' as varchar)
    union all
    select 'timestamp_add month clamps', cast({{ timestamp_add('month', -6, "timestamp '2026-08-31 12:00:00'") }} as varchar),
           cast(timestamp '2026-02-28 12:00:00' as varchar)
    union all
    select 'timestamp_add hour', cast({{ timestamp_add('hour', -24, "timestamp '2026-11-01 06:00:00'") }} as varchar),
           cast(timestamp '2026-10-31 06:00:00' as varchar)
    union all
    select 'map_value present', {{ map_value("map(array['campaign_id'], array['cmp-1'])", 'campaign_id') }}, 'cmp-1'
    union all
    select 'map_value absent', coalesce({{ map_value("map(array['campaign_id'], array['cmp-1'])", 'missing') }}, '<null>'), '<null>'
    union all
    select 'contains_control_chars tab',
           case when {{ contains_control_chars("'a' || chr(9) || 'b'") }} then 'yes' else 'no' end, 'yes'
    union all
    select 'contains_control_chars plain', case when {{ contains_control_chars("'a, \"b\" José'") }} then 'yes' else 'no' end, 'no'
    {%- for name, codepoint in [('NUL', 0), ('vertical tab', 11), ('unit separator', 31), ('DEL', 127),
                                ('NEL U+0085', 133), ('C1 U+009F', 159), ('U+2028', 8232), ('U+2029', 8233)] %}
    union all
    select 'contains_control_chars {{ name }}',
           case when {{ contains_control_chars("'a' || chr(" ~ codepoint ~ ") || 'b'") }} then 'yes' else 'no' end, 'yes'
    {%- endfor %}
    {%- for name, codepoint in [('no-break space', 160), ('emoji', 128512)] %}
    union all
    select 'contains_control_chars {{ name }} is text',
           case when {{ contains_control_chars("'a' || chr(" ~ codepoint ~ ") || 'b'") }} then 'yes' else 'no' end, 'no'
    {%- endfor %}
    union all
    select 'try_to_double number', cast({{ try_to_double("'3.5'") }} as varchar), cast(cast(3.5 as double) as varchar)
    union all
    select 'try_to_double text', coalesce(cast({{ try_to_double("'many'") }} as varchar), '<null>'), '<null>'
    union all
    select 'split ep-000001',
           cast({{ split_bucket("'ep-000001'", 'winback-2026-11') }} as varchar) || ' '
           || {{ split_group("'ep-000001'", 'winback-2026-11', [['A', 45], ['B', 45], ['holdout', 10]]) }},
           '4399 A'
    union all
    select 'split ep-000002',
           cast({{ split_bucket("'ep-000002'", 'winback-2026-11') }} as varchar) || ' '
           || {{ split_group("'ep-000002'", 'winback-2026-11', [['A', 45], ['B', 45], ['holdout', 10]]) }},
           '9054 holdout'
    union all
    select 'split ep-000004',
           cast({{ split_bucket("'ep-000004'", 'winback-2026-11') }} as varchar) || ' '
           || {{ split_group("'ep-000004'", 'winback-2026-11', [['A', 45], ['B', 45], ['holdout', 10]]) }},
           '5607 B'
    union all
    select 'split 42',
           cast({{ split_bucket("'42'", 'winback-2026-11') }} as varchar) || ' '
           || {{ split_group("'42'", 'winback-2026-11', [['A', 45], ['B', 45], ['holdout', 10]]) }},
           '4098 A'
    union all
    select 'split José',
           cast({{ split_bucket("'José'", 'winback-2026-11') }} as varchar) || ' '
           || {{ split_group("'José'", 'winback-2026-11', [['A', 45], ['B', 45], ['holdout', 10]]) }},
           '536 A'
    union all
    select 'split a:b,c',
           cast({{ split_bucket("'a:b,c'", 'winback-2026-11') }} as varchar) || ' '
           || {{ split_group("'a:b,c'", 'winback-2026-11', [['A', 45], ['B', 45], ['holdout', 10]]) }},
           '7927 B'
)

select * from cases where got is distinct from expected
