"""A TCP proxy between the soak's processes and Redis that drops, stalls and slows connections.

It runs an asyncio loop in a thread of the orchestrator and listens on loopback only. Faults
are switched on and off from the orchestrator's thread:

- ``drop``: close every open connection at once (both sides), as a reset would;
- ``stall``: stop forwarding on every connection until released (the bytes wait, then flow);
- ``slow``: delay every chunk by a fixed time;
- ``blackhole``: freeze the connections open now for ever (nothing forwarded, nothing closed),
  as a NAT or firewall that silently forgets a flow does; new connections work normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

CHUNK = 65536


class _Link:
    """One proxied connection: the client side, the Redis side, and a frozen flag."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.writers = (client, upstream)
        self.frozen = False

    def close(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()


class Proxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``."""

    def __init__(self, port: int, upstream_port: int) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.delay = 0.0
        self.connections = 0
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the chaos proxy did not start")

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._listen())
        self._ready.set()
        loop.run_forever()
        loop.set_exception_handler(lambda _loop, _context: None)  # closing: nothing to report
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), 2.0
            )
        except (OSError, TimeoutError):
            writer.transport.abort()  # Redis is down: the client sees a reset, as it would
            return
        self.connections += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        assert self._flowing is not None
        try:
            while data := await source.read(CHUNK):
                await self._flowing.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                while link.frozen:
                    await asyncio.sleep(3600)
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not link.frozen:
                link.close()

    # -- controls (called from other threads) ----------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> None:
        assert self._loop is not None
        done: Future[None] = Future()

        def run() -> None:
            try:
                fn()
                done.set_result(None)
            except BaseException as exc:  # handed back to the caller
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        done.result(10)

    def drop(self) -> int:
        """Close every open connection; returns how many."""
        count = len(self._links)

        def close_all() -> None:
            for link in list(self._links):
                link.close()

        self._call(close_all)
        return count

    def stall(self, on: bool) -> None:
        assert self._flowing is not None
        flowing = self._flowing
        self._call(flowing.clear if on else flowing.set)

    def slow(self, delay: float) -> None:
        self.delay = delay

    def blackhole(self) -> int:
        """Freeze every open connection for good; returns how many."""
        count = len(self._links)

        def freeze() -> None:
            for link in self._links:
                link.frozen = True

        self._call(freeze)
        return count

    def stop(self) -> None:
        if self._loop is None:
            return

        def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for link in list(self._links):
                link.frozen = False
                link.close()
            assert self._loop is not None
            self._loop.stop()

        with contextlib.suppress(Exception):
            self._loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(5)
