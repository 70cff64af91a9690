-- Typed DUE events within the lookback window. `session` and `attributes` are
-- map<string,string> in the real table: read them with map_value (element_at
-- on Athena), never with dot access, which only works on a struct.
with source as (
    select * from {{ source('due', 'all_events') }}
    -- Partition filter with constant bounds: Athena scans (and bills) only the
    -- lookback window, never what arrived after as_of.
    where {{ ingest_window(days=var('lookback_days')) }}
),

renamed as (
    select
        event_type,
        client.client_id as endpoint_id,
        {{ epoch_ms_to_timestamp('event_timestamp') }} as event_timestamp,
        {{ epoch_ms_to_timestamp('arrival_timestamp') }} as arrival_timestamp,
        ingest_timestamp,
        {{ map_value('attributes', 'campaign_id') }} as campaign_id,
        {{ map_value('session', 'session_id') }} as session_id,
        facets.email_channel.mail_event.mail.message_id as message_id,
        facets.email_channel.mail_event.click.link as clicked_link
    from source
)

select * from renamed
