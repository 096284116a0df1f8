"""tools/chaos: a chaos soak for rq_sched, and the audit that accounts for every task after it.

Workers, producers, schedulers and an operator run as separate processes against a private
redis-server (through a fault-injecting TCP proxy) while faults are injected on a seeded
schedule; every handler start and end, every producer reply and every operator action is
appended to a ledger outside Redis. The audit then compares the ledger with what Redis holds.
See docs/chaos.md.
"""
