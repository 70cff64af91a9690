"""The dbt side: finding and reading dbt's artifacts, the segment contract and its static check,
dbt's own node selection, running dbt, the dbt profile, ``as_of``, scaffolding, exposures and the
offline type check.

May import ``sync.core`` and ``sync.readers`` (a segment names the relation a reader reads).
"""
