"""``tools/bench``: rq_sched side by side with the peer task queues on one local Redis.

Run ``tools/bench --help``; docs/bench.md says what each scenario measures. The orchestrator runs
in the project's interpreter; every peer runs in a separate bench environment (``bench-env/``),
so nothing here is a dependency of the rq_sched package.
"""
