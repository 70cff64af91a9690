{#-
  Everything that differs between DuckDB (the local target) and Athena goes
  through these dispatch macros, so staging and segment models carry no
  engine-specific SQL. `default__` is the DuckDB spelling; `athena__` is
  Trino's. Struct fields (`client.client_id`) and `timestamp '...'` literals
  read the same on both engines and need no macro.
-#}

{% macro epoch_ms_to_timestamp(expr) -%}
  {{ return(adapter.dispatch('epoch_ms_to_timestamp')(expr)) }}
{%- endmacro %}

{% macro default__epoch_ms_to_timestamp(expr) -%}
  epoch_ms(cast({{ expr }} as bigint))
{%- endmacro %}

{% macro athena__epoch_ms_to_timestamp(expr) -%}
  cast(from_unixtime(cast({{ expr }} as double) / 1000.0) as timestamp)
{%- endmacro %}


{#- timestamp_add('day', -30, ts): unit is one of second, minute, hour, day, month, year. -#}
{% macro timestamp_add(unit, amount, expr) -%}
  {%- if unit not in ['second', 'minute', 'hour', 'day', 'month', 'year'] -%}
    {{ exceptions.raise_compiler_error("timestamp_add: unsupported unit '" ~ unit ~ "'") }}
  {%- endif -%}
  {{ return(adapter.dispatch('timestamp_add')(unit, amount, expr)) }}
{%- endmacro %}

{% macro default__timestamp_add(unit, amount, expr) -%}
  ({{ expr }} + to_{{ unit }}s(cast({{ amount }} as integer)))
{%- endmacro %}

{% macro athena__timestamp_add(unit, amount, expr) -%}
  date_add('{{ unit }}', {{ amount }}, {{ expr }})
{%- endmacro %}


{#- map_value(attributes, 'campaign_id'): the value for a key, null when absent. -#}
{% macro map_value(map_expr, key) -%}
  {{ return(adapter.dispatch('map_value')(map_expr, key)) }}
{%- endmacro %}

{% macro default__map_value(map_expr, key) -%}
  map_extract_value({{ map_expr }}, '{{ key }}')
{%- endmacro %}

{% macro athena__map_value(map_expr, key) -%}
  element_at({{ map_expr }}, '{{ key }}')
{%- endmacro %}


{#- now_utc(): the current instant as a plain (zone-less) UTC timestamp. -#}
{% macro now_utc() -%}
  {{ return(adapter.dispatch('now_utc')()) }}
{%- endmacro %}

{% macro default__now_utc() -%}
  cast(timezone('UTC', current_timestamp) as timestamp)
{%- endmacro %}

{% macro athena__now_utc() -%}
  cast(at_timezone(current_timestamp, 'UTC') as timestamp)
{%- endmacro %}


{#- contains_control_chars(expr): true when the string holds a character Pinpoint imports cannot carry. -#}
{% macro contains_control_chars(expr) -%}
  {{ return(adapter.dispatch('contains_control_chars')(expr)) }}
{%- endmacro %}

{#- Every C0/C1 control character (tab, line breaks, NUL, vertical tab, NEL U+0085, ...), DEL,
    and the Unicode line/paragraph separators U+2028/U+2029. RE2 (DuckDB) and Athena's regex
    engines (Joni, RE2J) all read \x.. and \x{....} escapes. -#}
{% macro control_chars_class() -%}
  [\x00-\x1F\x7F-\x9F\x{2028}\x{2029}]
{%- endmacro %}

{% macro default__contains_control_chars(expr) -%}
  regexp_matches({{ expr }}, '{{ control_chars_class() }}')
{%- endmacro %}

{% macro athena__contains_control_chars(expr) -%}
  regexp_like({{ expr }}, '{{ control_chars_class() }}')
{%- endmacro %}


{#- try_to_double(expr): the value as a double, null when it is not a number. -#}
{% macro try_to_double(expr) -%}
  {{ return(adapter.dispatch('try_to_double')(expr)) }}
{%- endmacro %}

{% macro default__try_to_double(expr) -%}
  try_cast(cast({{ expr }} as varchar) as double)
{%- endmacro %}

{% macro athena__try_to_double(expr) -%}
  try_cast(cast({{ expr }} as varchar) as double)
{%- endmacro %}
