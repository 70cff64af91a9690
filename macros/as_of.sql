{#-
  as_of(): the instant relative windows are measured from, as a constant SQL
  timestamp literal in UTC (millisecond precision). One value per dbt
  invocation, the same in every model:
    - var('as_of') set            -> that instant (`lakeseg run` always sets it,
                                     once, at the start of the run)
    - local DuckDB lake, not set  -> the lake's end: the latest arrival in all_events
    - anywhere else, not set      -> the invocation's start (dbt's run_started_at)
  A literal (not current_timestamp or a subquery) so that filters on
  ingest_timestamp prune partitions on Athena and on DuckDB alike.
-#}
{% macro as_of() -%}
  timestamp '{{ as_of_datetime().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] }}'
{%- endmacro %}


{#- as_of_datetime(): as_of() as a Python datetime (naive, UTC), for Jinja arithmetic. -#}
{% macro as_of_datetime() -%}
  {%- set pinned = var('as_of', none) -%}
  {%- if pinned -%}
    {%- set text = (pinned | string) | replace("T", " ") | replace("Z", "") -%}
    {%- if modules.re.match("^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{1,6}$", text) -%}
      {%- set parsed = modules.datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f") -%}
    {%- elif modules.re.match("^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$", text) -%}
      {%- set parsed = modules.datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S") -%}
    {%- elif modules.re.match("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", text) -%}
      {%- set parsed = modules.datetime.datetime.strptime(text, "%Y-%m-%d") -%}
    {%- else -%}
      {{ exceptions.raise_compiler_error("var('as_of') = '" ~ pinned ~ "' is not an ISO-8601 UTC instant such as '2026-11-01 00:00:00'") }}
    {%- endif -%}
    {{ return(parsed) }}
  {%- elif target.type == 'duckdb' and execute -%}
    {%- set relation = source('due', 'all_events') -%}
    {%- set result = run_query(
          "select max(arrival_timestamp) from " ~ relation
          ~ " where ingest_timestamp = (select max(ingest_timestamp) from " ~ relation ~ ")") -%}
    {%- set end_ms = result.columns[0].values()[0] -%}
    {%- if end_ms is none -%}
      {{ exceptions.raise_compiler_error("as_of: the local lake's all_events is empty; pin var('as_of')") }}
    {%- endif -%}
    {{ return(modules.datetime.datetime(1970, 1, 1) + modules.datetime.timedelta(milliseconds=end_ms | int)) }}
  {%- else -%}
    {{ return(run_started_at.replace(tzinfo=none, microsecond=(run_started_at.microsecond // 1000) * 1000)) }}
  {%- endif -%}
{%- endmacro %}


{#-
  ingest_window(days=, hours=, months=): the partition filter of a model that
  reads DUE events over a window ending at as_of():
      ingest_timestamp >= <as_of - window - slack> and ingest_timestamp <= <as_of>
  Both bounds are literals, so Athena prunes partitions (and DuckDB skips the
  files of other ingest days). The slack, var('ingest_slack_hours') (default
  24), covers the partition's granularity (a partition's value is the start of
  its hour or day) and device clocks running ahead of arrival. The upper bound
  keeps what arrived after as_of out of a pinned or backfill run: events that
  happened by as_of but were ingested in a later partition are not counted.
  A month is counted as 31 days here (the bound must never cut the window);
  models still bound event_timestamp exactly with timestamp_add.
-#}
{% macro ingest_window(days=0, hours=0, months=0, column='ingest_timestamp') -%}
  {%- set slack = var('ingest_slack_hours', 24) | int -%}
  {%- set end = as_of_datetime() -%}
  {%- set start = end - modules.datetime.timedelta(days=days + 31 * months, hours=hours + slack) -%}
  {%- if days + hours + months <= 0 -%}
    {{ exceptions.raise_compiler_error("ingest_window: give the window as days=, hours= or months= (got none)") }}
  {%- endif -%}
  {{ column }} >= {{ ingest_literal(start) }} and {{ column }} <= {{ ingest_literal(end) }}
{%- endmacro %}


{#-
  ingest_literal(dt): a bound for the ingest_timestamp partition column. With
  the real DUE table (a timestamp partition) it is a timestamp literal. With
  var('ingest_partition_format') set -- a lake whose ingest partition is a
  string such as '2026/10/31/23' (yyyy/MM/dd/HH, e.g. projected) -- it is that
  string: the format must sort like time, which yyyy/MM/dd/HH does.
-#}
{% macro ingest_literal(dt) -%}
  {%- set fmt = var('ingest_partition_format', none) -%}
  {%- if fmt -%}
    '{{ dt.strftime(fmt) }}'
  {%- else -%}
    timestamp '{{ dt.strftime("%Y-%m-%d %H:%M:%S") }}'
  {%- endif -%}
{%- endmacro %}
