"""Reading a built segment from its warehouse: DuckDB locally, Athena (UNLOAD to Parquet) in production.

Imports only ``sync.core``.
"""
