with source as (
    select * from {{ source('due', 'all_events') }}
    -- Partition filter: Athena scans (and bills) only the lookback window.
    where ingest_timestamp >= {{ timestamp_add('day', -1 * var('lookback_days'), as_of()) }}
),

renamed as (
    select
        event_type,
        client.client_id as endpoint_id,
        {{ epoch_ms_to_timestamp('event_timestamp') }} as event_timestamp,
        {{ epoch_ms_to_timestamp('arrival_timestamp') }} as arrival_timestamp,
        cast(ingest_timestamp as timestamp) as ingest_timestamp,
        {{ map_value('attributes', 'campaign_id') }} as campaign_id,
        session.session_id as session_id,
        facets.email_channel.mail_event.mail.message_id as message_id,
        facets.email_channel.mail_event.click.link as clicked_link
    from source
)

select * from renamed
