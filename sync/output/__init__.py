"""What people read: terminal progress and tables, the HTML report, run history lines,
CloudWatch metrics, the scheduler's outcome, and logging.

May import ``sync.run`` (the run report) and the packages below it.
"""
