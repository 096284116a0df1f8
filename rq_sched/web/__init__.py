"""The dashboard: a JSON API over the :class:`~rq_sched.Inspector` and a static single-page UI.

Needs the ``web`` extra (``pip install 'rq_sched[web]'``: starlette, uvicorn, prometheus-client).
:func:`create_app` builds the ASGI app; :func:`make_server` wraps it in a uvicorn server that a
host process can run in its own event loop. See ``docs/dashboard.md`` for the REST API.
"""

from rq_sched.web.app import create_app, make_server

__all__ = ["create_app", "make_server"]
