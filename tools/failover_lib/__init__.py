"""tools/failover: what a Redis failover costs rq_sched, counted task by task (docs/scaling.md)."""
