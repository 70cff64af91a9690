"""The shared vocabulary every other package may use: errors and their exit codes, the canonical
field schema (Pinpoint's endpoint fields), SQL quoting, the import file format, failpoints.

Imports nothing else of lakeseg.
"""
