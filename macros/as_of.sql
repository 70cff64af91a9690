{#-
  as_of(): the instant relative windows are measured from, as a SQL timestamp
  expression in UTC.
    - var('as_of') set            -> that instant (reproducible runs, backfills)
    - local DuckDB lake, not set  -> the lake's end: the latest arrival in all_events
    - anywhere else, not set      -> now
  On Athena the result is a constant expression, so partition filters on
  ingest_timestamp prune partitions.
-#}
{% macro as_of() -%}
  {%- set pinned = var('as_of', none) -%}
  {%- if pinned -%}
    timestamp '{{ pinned | replace("T", " ") | replace("Z", "") }}'
  {%- elif target.type == 'duckdb' -%}
    (select {{ epoch_ms_to_timestamp('max(arrival_timestamp)') }} from {{ source('due', 'all_events') }})
  {%- else -%}
    {{ now_utc() }}
  {%- endif -%}
{%- endmacro %}
