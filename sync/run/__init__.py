"""One sync run: the diff against the last committed snapshot, the guards, import files, the
destination's verdict and the commit (``engine``), and the imports table registered after a delivery.

May import ``sync.core``, ``sync.dbt``, ``sync.readers``, ``sync.state`` and ``sync.destinations``.
"""
