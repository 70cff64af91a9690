{#-
  Splits and holdouts: assign each endpoint to a named group by a salted hash
  of its Id, the same on DuckDB and Athena, stable across runs.

    {{ split_group('endpoint_id', 'winback-2026-11', [['A', 45], ['B', 45], ['holdout', 10]]) }}

  bucket = the first 8 hex digits of md5(salt || ':' || id) as an integer,
  modulo 10,000 (basis points); groups take consecutive ranges of buckets in
  the order given. DuckDB's md5() and Athena's to_hex(md5(to_utf8(...))) are
  the same MD5 digest, so an id lands in the same group on both engines (and
  in Python: int(hashlib.md5(f"{salt}:{id}".encode()).hexdigest()[:8], 16) % 10000).
  A new salt reshuffles everyone: use one per experiment.
-#}

{% macro split_bucket(id_expr, salt) -%}
  {{ return(adapter.dispatch('split_bucket')(id_expr, salt)) }}
{%- endmacro %}

{% macro default__split_bucket(id_expr, salt) -%}
  (cast(('0x' || substr(md5('{{ salt }}' || ':' || cast({{ id_expr }} as varchar)), 1, 8)) as bigint) % 10000)
{%- endmacro %}

{% macro athena__split_bucket(id_expr, salt) -%}
  mod(from_base(substr(lower(to_hex(md5(to_utf8('{{ salt }}' || ':' || cast({{ id_expr }} as varchar))))), 1, 8), 16), 10000)
{%- endmacro %}


{% macro split_group(id_expr, salt, groups) -%}
  {%- if salt is not string or not salt or "'" in salt -%}
    {{ exceptions.raise_compiler_error("split_group: salt must be a non-empty string without quotes, got " ~ salt) }}
  {%- endif -%}
  {%- set ns = namespace(total=0, upper=0) -%}
  {%- for g in groups -%}
    {%- if g | length != 2 or g[0] is not string or g[1] is not number or g[1] <= 0 -%}
      {{ exceptions.raise_compiler_error("split_group: each group is [name, percent > 0], got " ~ g) }}
    {%- endif -%}
    {%- set ns.total = ns.total + (g[1] * 100) | round | int -%}
  {%- endfor -%}
  {%- if ns.total != 10000 -%}
    {{ exceptions.raise_compiler_error("split_group: percentages add up to " ~ (ns.total / 100) ~ ", not 100: " ~ groups) }}
  {%- endif -%}
  case
  {%- for g in groups %}
    {%- set ns.upper = ns.upper + (g[1] * 100) | round | int %}
    {% if not loop.last %}when {{ split_bucket(id_expr, salt) }} < {{ ns.upper }} then {% else %}else {% endif -%}
    '{{ g[0] }}'
  {%- endfor %}
  end
{%- endmacro %}
