"""lakeseg: segments as dbt models, synced into an engagement platform."""

__version__ = "0.1.0"
