"""The sample data lake: a deterministic synthetic lake shaped like the DUE events database
and CRM tables, and its schema.

Imports only ``sync.core``.
"""
