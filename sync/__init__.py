"""lakeseg: segments as dbt models, synced into an engagement platform."""
