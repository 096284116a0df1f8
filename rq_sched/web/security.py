"""The dashboard's gatekeeper: token auth, read-only mode, cross-site request refusal, allowed
Host names, and the security headers sent with every response.

It is one ASGI middleware in front of everything, so no route can forget a check:

* ``Authorization: Bearer <token>`` is required on ``/api`` and ``/metrics`` when a token is set
  (the page and its scripts load without it, then ask for the token).
* Mutating methods (POST, PUT, PATCH, DELETE) are refused in read-only mode, and refused when
  they come from another site: ``Sec-Fetch-Site`` must be same-origin (or absent), ``Origin``
  must name this host (or be absent), and the request must carry ``X-Requested-With`` or a JSON
  content type — which a cross-site HTML form cannot send without a CORS preflight, and no CORS
  is ever granted.
* With ``allowed_hosts``, a request whose Host header names another host is refused, which stops
  DNS-rebinding pages from reaching the dashboard (IP literals may be accepted as well: a
  rebinding page always uses a DNS name). ``rq-sched web`` sets the list for every bind.
* A strict Content-Security-Policy (no inline script or style, nothing from other origins)
  backs up the UI's rule of rendering user data only as text.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def route_path(scope: Scope) -> str:
    """The request's path inside this app: without the ``root_path`` of a mount or proxy.

    A mounted app (``Mount("/queues", app=dashboard)``) sees the full path with the mount
    point in ``root_path``; the rules must look at what follows it, or ``/queues/api/...``
    would escape the token check."""
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def host_name(host_header: str) -> str:
    """The host part of a Host header (``[::1]:8080`` -> ``::1``), lower-cased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware applying the rules in the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth_token: str | None,
        read_only: bool,
        allowed_hosts: Sequence[str] | None,
        allow_ip_hosts: bool = False,
    ) -> None:
        self.app = app
        self.auth_token = auth_token.encode() if auth_token else None
        self.read_only = read_only
        self.allowed_hosts = {h.lower().strip("[]") for h in allowed_hosts or ()} or None
        self.allow_ip_hosts = allow_ip_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        private = route_path(scope).startswith(("/api/", "/metrics"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if private:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> JSONResponse | None:
        """The error response for a request that breaks a rule, or None to let it through."""
        headers = Headers(scope=scope)
        path = route_path(scope)
        if self.allowed_hosts and not self._host_allowed(host_name(headers.get("host", ""))):
            return _error(
                400,
                "this Host name is not allowed; use the server's address or a name given "
                "with --allowed-host",
            )
        protected = path.startswith(("/api/", "/metrics"))
        if self.auth_token and protected and not self._authorized(headers):
            response = _error(401, "authentication required: send Authorization: Bearer <token>")
            response.headers["www-authenticate"] = 'Bearer realm="rq-sched"'
            return response
        if scope["method"] in MUTATING:
            if self.read_only:
                return _error(403, "the dashboard is read-only (started with --read-only)")
            reason = cross_site_reason(headers, scheme=str(scope.get("scheme", "http")))
            if reason:
                return _error(403, f"cross-site request refused: {reason}")
        return None

    def _host_allowed(self, name: str) -> bool:
        if self.allowed_hosts is None or name in self.allowed_hosts:
            return True
        if not self.allow_ip_hosts:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or self.auth_token is None:
            return False
        return hmac.compare_digest(token.strip().encode(), self.auth_token)


def cross_site_reason(headers: Headers, *, scheme: str = "http") -> str | None:
    """Why a mutating request looks cross-site (None when it looks same-origin).

    ``scheme`` is the one the request arrived with; an Origin must match it as well as the
    host, since ``https://host`` and ``http://host`` are different origins. Behind a TLS proxy
    the proxy's ``X-Forwarded-Proto`` is accepted too (a cross-site page cannot set it without a
    CORS preflight, which is never granted).
    """
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {site!r}"
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin) if origin != "null" else None
        netloc = parts.netloc.lower() if parts else ""
        if not netloc or netloc != headers.get("host", "").lower():
            return f"Origin {origin!r} is not this host"
        schemes = {scheme, headers.get("x-forwarded-proto", scheme).strip().lower()}
        if parts is not None and parts.scheme.lower() not in schemes:
            return f"Origin {origin!r} is not this host's scheme ({scheme})"
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if "x-requested-with" not in headers and content_type != "application/json":
        return "send an X-Requested-With header or a JSON body (Content-Type: application/json)"
    return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
