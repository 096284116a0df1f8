"""Integrations with the rest of the Python ecosystem, each behind an optional extra.

One module (or subpackage) per integration; each imports the core and its own third-party
package, and nothing in the core imports them (``tests/test_layout.py`` keeps it so):

* :mod:`~rq_sched.contrib.typed`: typed task handles (``TaskHandle[P]``); standard library only.
* :mod:`~rq_sched.contrib.jsonlog`: JSON-lines log records with the running task's fields;
  standard library only.
* :mod:`~rq_sched.contrib.starlette`: lifespan, client dependency and a mountable dashboard for
  Starlette and FastAPI apps (extra ``web``; FastAPI itself is the user's).
* :mod:`~rq_sched.contrib.otel`: OpenTelemetry trace propagation through task headers (extra
  ``otel``).
* :mod:`~rq_sched.contrib.django`: a Django app: settings, enqueue on commit, management
  commands, the dashboard behind the admin login (extra ``django``).

Importing this package imports none of them.
"""
