"""One sync run: the diff against the last committed snapshot, the guards, import files, the
destination's verdict and the commit (``engine``), the imports table registered after a delivery, and
the run lease that keeps runs of one deployment from overlapping (``lease``).

May import ``sync.core``, ``sync.dbt``, ``sync.readers``, ``sync.state`` and ``sync.destinations``.
"""
