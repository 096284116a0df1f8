"""Running a dashboard app on a real uvicorn server in a thread, for the API tests.

(Starlette's TestClient would do without a socket, but it now wants the httpx2 package; a real
server on a free loopback port tests the same code plus the HTTP layer.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from starlette.applications import Starlette

from rq_sched.local_redis import free_port, wait_for_port
from rq_sched.web import make_server


@contextmanager
def serving(app: Starlette) -> Iterator[httpx.Client]:
    """An HTTP client whose base URL is ``app`` served on 127.0.0.1 (stopped on exit)."""
    port = free_port()
    server = make_server(app, port=port)
    thread = threading.Thread(target=server.run, name="test-dashboard", daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "dashboard server did not stop"
