"""One application function per command (what ``cli.py`` calls): wiring a dbt project, its
profile and ``lakeseg.yml`` into a run, ``check``, ``history``/``unlock``.

May import every package; nothing but ``sync.cli`` imports it.
"""
