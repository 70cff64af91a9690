-- The portable-SQL macros, checked on literal values on whichever engine runs
-- `dbt build` (DuckDB locally, Athena in production). Returns failing cases.
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
)

select * from cases where got is distinct from expected
