{#-
  due_event_view('_email.click'): one of the Digital User Engagement views
  (email_send, email_open, email_click, session_start, ...) over the typed
  all_events staging model. One row per event of that type.
-#}
{% macro due_event_view(event_type) -%}
with events as (
    select * from {{ ref('stg_due__all_events') }}
    where event_type = '{{ event_type }}'
)

select
    endpoint_id,
    event_timestamp,
    arrival_timestamp,
    ingest_timestamp,
    campaign_id,
    message_id,
    session_id,
    clicked_link
from events
{%- endmacro %}
