"""The schema of the customer data lake, in Athena (Hive DDL) types.

``ALL_EVENTS`` is the Glue table of the Digital User Engagement (DUE) Events
Database, column for column and type for type, as its CloudFormation template
creates it: public repository ``awslabs/digital-user-engagement-events-database``,
file ``deployment/digital-user-engagement-events-database.template``, the
``EventTableAllNamedQuery`` resource (``CREATE EXTERNAL TABLE all_events ...
PARTITIONED BY (ingest_timestamp timestamp) STORED AS parquet``). Glue keeps
column names in lower case, so the DDL's ``awsAccountId`` is ``awsaccountid``
and ``unsubscribeLinkTag`` is ``unsubscribelinktag``. Note what the DDL says and
the sample lake therefore does: ``session`` and ``attributes`` are
``map<string,string>`` (read ``session['session_id']``, never
``session.session_id``); ``client``, ``device`` and ``facets`` are structs;
``ingest_timestamp`` is a ``timestamp`` partition column (the solution's
Lambda adds one partition per hour; ``yyyy/MM/dd/HH`` is only the S3 folder).

The CRM tables are this project's own, documented here and in docs/sample-lake.md.

``duckdb_type`` turns an Athena type into DuckDB's spelling (via sqlglot), so
the sample lake writes exactly these types and the type check reads the same
declarations.
"""

from __future__ import annotations

from sqlglot import exp

_FACETS = (
    "struct<email_channel:struct<mail_event:struct<"
    "mail:struct<message_id:string,message_send_timestamp:bigint,from_address:string,destination:array<string>,"
    "headers_truncated:boolean,headers:array<map<string,string>>,"
    "common_headers:struct<`from`:string,to:array<string>,subject:string>>,"
    "send:map<string,string>,"
    "delivery:struct<smtp_response:string,reporting_mta:string,recipients:array<string>,processing_time_millis:int>,"
    "`open`:struct<ip_address:string,user_agent:string>,"
    "click:struct<ip_address:string,user_agent:string,link:string,link_tags:struct<unsubscribelinktag:array<string>>>,"
    "reject:struct<reason:string>,"
    "complaint:struct<complained_recipients:array<struct<email_address:string>>,feedback_id:string,user_agent:string,"
    "complaint_feedback_type:string>,"
    "bounce:struct<bounce_type:string,bounce_sub_type:string,"
    "bounced_recipients:array<struct<email_address:string,`action`:string,status:string,diagnostic_code:string>>,"
    "feedback_id:string,reporting_mta:string>"
    ">>>"
)

# DUE all_events: (column, Athena type), in the DDL's order; the partition column last.
ALL_EVENTS: tuple[tuple[str, str], ...] = (
    ("event_type", "string"),
    ("event_timestamp", "bigint"),
    ("arrival_timestamp", "bigint"),
    ("event_version", "string"),
    ("application", "struct<app_id:string,sdk:map<string,string>>"),
    ("client", "struct<client_id:string,cognito_id:string>"),
    ("device", "struct<platform:map<string,string>>"),
    ("session", "map<string,string>"),
    ("attributes", "map<string,string>"),
    ("client_context", "struct<custom:map<string,string>>"),
    ("awsaccountid", "string"),
    ("facets", _FACETS),
    ("metrics", "struct<price_in_millicents_usd:double>"),
)
ALL_EVENTS_PARTITION = ("ingest_timestamp", "timestamp")

CRM: dict[str, tuple[tuple[str, str], ...]] = {
    "contacts": (
        ("id", "string"),
        ("username", "string"),
        ("email", "string"),
        ("first_name", "string"),
        ("last_name", "string"),
        ("state", "string"),
        ("created_at", "timestamp"),
    ),
    "subscriptions": (
        ("subscription_id", "string"),
        ("contact_id", "string"),
        ("plan", "string"),
        ("start_date", "date"),
        ("end_date", "date"),
        ("auto_renewal", "boolean"),
        ("missed_payments", "int"),
    ),
    "app_logins": (
        ("login_id", "string"),
        ("username", "string"),
        ("login_timestamp", "timestamp"),
        ("client", "string"),
    ),
    "web_sessions": (
        ("session_id", "string"),
        ("user_id", "string"),
        ("session_timestamp", "timestamp"),
        ("page_views", "int"),
        ("traffic_source", "string"),
    ),
}


def tables() -> dict[tuple[str, str], dict[str, str]]:
    """Every table as {(source, table): {column: Athena type}}, partition columns included."""
    out = {("due", "all_events"): dict((*ALL_EVENTS, ALL_EVENTS_PARTITION))}
    out.update({("crm", name): dict(cols) for name, cols in CRM.items()})
    return out


def parse_type(athena_type: str) -> exp.DataType:
    """An Athena (Hive DDL) type as a sqlglot DataType."""
    return exp.DataType.build(athena_type, dialect="hive")


def duckdb_type(athena_type: str) -> str:
    return parse_type(athena_type).sql("duckdb")
