"""One module per benchmarked system, run in that system's own bench interpreter.

Each module defines the handler (which calls ``PROBE.hit``; with ``BENCH_HANDLER=call`` it
first runs the one-Redis-call body ``CALL``), whatever its worker command imports (an app, a
broker, settings), and ``async make_producer(url)`` returning an object with the
:class:`bench_lib.producer.Producer` methods. Worker commands and printed settings live in
:mod:`bench_lib.systems`; the tunables reach the modules through ``BENCH_*`` environment
variables so both places agree.
"""
