"""``rqsched_worker`` and ``rqsched_scheduler``: the ``rq-sched`` commands with Django settings."""
