"""``rq-sched web``: serve the dashboard (JSON API, UI, /metrics) for one Redis.

Safe by default: it binds 127.0.0.1. Whatever it binds, it answers only to Host names it
knows (loopback names, the bound address, ``--allowed-host`` names) or to IP literals, so a
web page cannot reach it through DNS rebinding. Binding another address without
``--auth-token`` refuses to start unless ``--allow-no-auth`` says it is meant, since anyone
who can reach the port could then act on the queues; an empty token is refused too (it would
disable auth while the UI claims it is on).
"""

from __future__ import annotations

import argparse
import logging
import os

from rq_sched.cli.common import add_redis_options, fail
from rq_sched.errors import RqSchedError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``web`` to the parser."""
    parser = sub.add_parser(
        "web",
        help="serve the web dashboard",
        description="Serve the dashboard: JSON API under /api, the UI at /, and /metrics.",
    )
    add_redis_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port (%(default)s)")
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("RQ_SCHED_AUTH_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' on the API (env RQ_SCHED_AUTH_TOKEN)",
    )
    parser.add_argument(
        "--read-only", action="store_true", help="refuse every action; only show state"
    )
    parser.add_argument(
        "--allowed-host",
        "--allow-host",
        dest="allow_host",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name the dashboard answers to (repeatable); loopback names, the bound "
        "address and IP literals are always accepted",
    )
    parser.add_argument(
        "--allow-no-auth",
        action="store_true",
        help="serve a non-loopback address without --auth-token (anyone who reaches the port "
        "can act on the queues)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from rq_sched.web import create_app, make_server  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        return fail(f"the dashboard needs the web extra: pip install 'rq_sched[web]' ({exc})")
    from rq_sched.inspector.inspector import Inspector  # noqa: PLC0415
    from rq_sched.web.security import LOOPBACK_HOSTS  # noqa: PLC0415

    loopback = args.host in LOOPBACK_HOSTS or args.host.startswith("127.")
    if args.auth_token is not None and not args.auth_token.strip():
        return fail(
            "--auth-token (or RQ_SCHED_AUTH_TOKEN) is empty, which would leave the API open; "
            "pass a real token, or leave both unset"
        )
    if not loopback and not args.auth_token:
        if not args.allow_no_auth:
            return fail(
                f"--host {args.host} makes the dashboard reachable from other hosts; protect it "
                "with --auth-token TOKEN (or RQ_SCHED_AUTH_TOKEN), or pass --allow-no-auth if "
                "anyone who reaches the port may act on the queues"
            )
        log.warning("the dashboard on %s has no --auth-token (--allow-no-auth)", args.host)
    wildcard = args.host in ("0.0.0.0", "::", "")  # noqa: S104 - recognising it, not binding
    allowed = [*args.allow_host, *LOOPBACK_HOSTS, *(() if wildcard else (args.host,))]
    try:
        inspector = Inspector.from_url(args.url, cluster=args.cluster, namespace=args.namespace)
        app = create_app(
            inspector,
            auth_token=args.auth_token,
            read_only=args.read_only,
            allowed_hosts=allowed,
            allow_ip_hosts=True,
        )
    except (RqSchedError, ValueError) as exc:
        return fail(str(exc))
    server = make_server(
        app, host=args.host, port=args.port, log_level=args.log_level.lower(), embedded=False
    )
    scheme_host = f"[{args.host}]" if ":" in args.host else args.host
    mode = " (read-only)" if args.read_only else ""
    print(f"rq-sched web: dashboard on http://{scheme_host}:{args.port}/{mode}", flush=True)
    try:
        server.run()
    finally:
        inspector.close()
    return 0
