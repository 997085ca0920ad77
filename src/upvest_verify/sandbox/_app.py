"""The emulator's HTTP app (Starlette): the Investment API subset and the control endpoints.

Every API call is authenticated as Upvest does (upvest-protocol.md §5-7): the
``upvest-client-id`` names the tenant (400 without it), the HTTP message signature
must verify against the tenant's registered public key with this library's own
:class:`~upvest_verify.Verifier` (401 ``Signature is incorrect``), the bearer token
must be live and the tenant's (401) and carry the operation's scope (403). Errors are
``application/problem+json``; every answer carries an ``upvest-request-id``.

The ``/_sandbox/`` endpoints drive the emulator from tests and the command line. They
are unsigned and answer loopback clients only.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from upvest_verify import KeySet, Policy, VerificationError, Verifier
from upvest_verify.signing import SigningKey

from ._rules import (
    InvalidRequest,
    check_create,
    check_patch,
    check_token_form,
    parse_list_query,
)
from ._state import SCOPES, TEST_EVENT_TYPE, State, Tamper, Tenant, Webhook

try:  # with OpenTelemetry installed, a provider that records nothing
    from opentelemetry.metrics import NoOpMeterProvider

    _NO_METRICS: Any = NoOpMeterProvider()
except ImportError:  # without it nothing is recorded anyway
    _NO_METRICS = None

__all__ = [
    "ADMIN",
    "READ",
    "Host",
    "Problem",
    "SignatureChecker",
    "authenticate",
    "create_app",
    "problem_response",
    "read_json",
]

READ = "webhooks:read"
ADMIN = "webhooks:admin"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    500: "Internal Server Error",
}
_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    500: "internal_server_error",
}


class Host(Protocol):
    """Protocol: what the app needs from the emulator that serves it."""

    state: State
    token_ttl: float
    allow_http: bool

    def monotonic(self) -> float:
        """Seconds on the emulator's monotonic clock."""

    def url_prefixes(self) -> Sequence[str]:
        """Subscription URLs accepted whatever the URL rules say (the relay's)."""

    def emit_events(
        self, specs: object, *, client_id: str | None = None, webhook_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Create events and queue them; raises ``ValueError`` for a bad spec."""

    def rotate_keys(self, overlap: float | None = None) -> SigningKey:
        """Rotate the webhook-signing key."""

    def now_stamp(self) -> str:
        """The current time, RFC 3339."""


class Problem(Exception):
    """An error answer (``application/problem+json``)."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def _request_id(scope: Scope) -> str:
    return str(scope.get("upvest_request_id", ""))


def problem_response(request: Request, status: int, detail: str) -> Response:
    """An RFC 7807 answer shaped like Upvest's ``Error`` schema."""
    doc = {
        "type": _TYPES.get(status, "error"),
        "status": status,
        "title": _TITLES.get(status, "Error"),
        "detail": detail,
        "instance": request.url.path,
        "request_id": _request_id(request.scope),
    }
    return Response(json.dumps(doc), status_code=status, media_type="application/problem+json")


class RequestIdMiddleware:
    """Pure ASGI middleware: an ``upvest-request-id`` UUID on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope["upvest_request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"upvest-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _acceptable(accept: str | None) -> bool:
    if accept is None or not accept.strip():
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("*/*", "application/*", "application/json"):
            return True
    return False


def _request_url(request: Request) -> str:
    # The target exactly as sent (raw path, raw query): @path and @query are signed raw.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    host = request.headers.get("host", "localhost")
    target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    return f"{request.url.scheme}://{host}{target}"


class SignatureChecker:
    """Checks request signatures with the project's verifier, one per tenant and dialect."""

    def __init__(self) -> None:
        self._verifiers: dict[tuple[str, str, str], Verifier] = {}

    def check(self, request: Request, body: bytes, tenant: Tenant, *, token: bool) -> None:
        # upvest-protocol.md §7.7: "15" selects v15 (RFC 9421 layout); without the field
        # Upvest assumes v6 (unquoted layout, Digest).
        version = request.headers.get("upvest-signature-version")
        if version in (None, "6"):
            layout = "upvest-v6"
        elif version == "15":
            layout = "rfc9421"
        else:
            raise Problem(401, "Signature is incorrect")
        key = tenant.signing_key
        cache_key = (tenant.client_id, key.key_id, layout + ("+token" if token else ""))
        verifier = self._verifiers.get(cache_key)
        if verifier is None:
            # Upvest's signers cover the client id and the bearer token (§7.1); the
            # emulator insists, so a token cannot be moved to another signed request.
            required = ["@method", "@path", "upvest-client-id"]
            if not token:
                required.append("authorization")
            policy = Policy(
                dialect="upvest-v6" if layout == "upvest-v6" else "rfc9421",
                key_types=frozenset({key.key_type}),
                required_components=tuple(required),
            )
            # API requests are not webhooks: keep them out of the app's verification metrics.
            verifier = Verifier(
                KeySet.from_keys([key.verifying_key]), policy=policy, meter_provider=_NO_METRICS
            )
            self._verifiers[cache_key] = verifier
        try:
            verifier.verify(request.method, _request_url(request), request.headers.raw, body)
        except VerificationError as e:
            raise Problem(401, "Signature is incorrect") from e


async def authenticate(
    host: Host, signatures: SignatureChecker, request: Request, scope: str | None
) -> tuple[Tenant, bytes]:
    """Authenticate an API call; returns the tenant and the raw body.

    ``scope=None`` is the token request: signed, but without a bearer token.

    Raises:
        Problem: 400 without a client id, 401 for a bad signature or token, 403 for a
            missing scope, 406 for an ``accept`` that excludes JSON.
    """
    body = await request.body()
    client_id = request.headers.get("upvest-client-id")
    if not client_id:
        raise Problem(400, "Missing Client ID")
    tenant = host.state.tenant(client_id)
    if tenant is None:
        raise Problem(401, "Unknown client")
    signatures.check(request, body, tenant, token=scope is None)
    if scope is not None:
        authorization = request.headers.get("authorization", "")
        kind, _, value = authorization.partition(" ")
        if kind.lower() != "bearer" or not value:
            raise Problem(401, "Missing bearer token")
        token = host.state.token(value.strip(), host.monotonic())
        if token is None or token.client_id != tenant.client_id:
            raise Problem(401, "Access token is invalid or has expired")
        if not token.allows(scope):
            raise Problem(403, f"The access token lacks the scope {scope}")
    if request.method != "DELETE" and not _acceptable(request.headers.get("accept")):
        raise Problem(406, "Only application/json can be served")
    return tenant, body


def read_json(request: Request, body: bytes) -> Any:
    """The JSON body of a request (400 unless ``content-type`` is JSON and it parses)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise Problem(400, "content-type must be application/json")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Problem(400, "the body is not valid JSON") from e


def _webhook_or_404(host: Host, request: Request, tenant: Tenant) -> Webhook:
    webhook_id = request.path_params["webhook_id"]
    try:
        uuid.UUID(webhook_id)
    except ValueError as e:
        raise Problem(400, "webhook_id must be a UUID") from e
    hook = host.state.webhook(webhook_id, tenant.client_id)
    if hook is None:
        raise Problem(404, "Webhook not found")
    return hook


def _api_routes(host: Host) -> list[BaseRoute]:
    signatures = SignatureChecker()

    async def token(request: Request) -> Response:
        tenant, body = await authenticate(host, signatures, request, None)
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise Problem(400, "content-type must be application/x-www-form-urlencoded")
        try:
            form = urllib.parse.parse_qs(
                body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body)
            )
            client_id, secret, scopes = check_token_form(form)
        except (ValueError, UnicodeDecodeError) as e:
            raise Problem(400, str(e) if isinstance(e, InvalidRequest) else "bad form") from e
        if client_id != tenant.client_id or not hmac.compare_digest(
            secret.encode(), tenant.client_secret.encode()
        ):
            raise Problem(401, "Invalid client credentials")
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            raise Problem(400, f"Scopes not granted to this client: {' '.join(unknown)}")
        ttl = host.token_ttl
        issued = host.state.issue_token(tenant.client_id, scopes, host.monotonic() + ttl)
        doc = {
            "access_token": issued.value,
            "expires_in": int(ttl),
            "token_type": "bearer",
            "scope": " ".join(scopes),
        }
        return JSONResponse(doc, headers={"cache-control": "no-store"})

    async def verify_keys(request: Request) -> Response:
        await authenticate(host, signatures, request, READ)
        return JSONResponse(host.state.jwks(host.monotonic()))

    async def list_webhooks(request: Request) -> Response:
        tenant, _ = await authenticate(host, signatures, request, READ)
        try:
            query = parse_list_query(request.query_params)
        except InvalidRequest as e:
            raise Problem(400, str(e)) from e
        hooks = host.state.webhooks(tenant.client_id)
        hooks.sort(key=lambda w: getattr(w, query.sort), reverse=query.order == "DESC")
        page = hooks[query.offset : query.offset + query.limit]
        meta = {
            "offset": query.offset,
            "limit": query.limit,
            "count": len(page),
            "total_count": len(hooks),
            "sort": query.sort,
            "order": query.order,
        }
        return JSONResponse({"meta": meta, "data": [w.to_json() for w in page]})

    async def create_webhook(request: Request) -> Response:
        tenant, body = await authenticate(host, signatures, request, ADMIN)
        try:
            fields = check_create(
                read_json(request, body),
                allow_http=host.allow_http,
                extra_prefixes=host.url_prefixes(),
            )
        except InvalidRequest as e:
            raise Problem(400, str(e)) from e
        stamp = host.now_stamp()
        # New subscriptions start disabled (upvest-protocol.md §5.2).
        hook = Webhook(
            id=str(uuid.uuid4()),
            client_id=tenant.client_id,
            enabled=False,
            created_at=stamp,
            updated_at=stamp,
            **fields,
        )
        host.state.add_webhook(hook)
        return JSONResponse(hook.to_json(), status_code=201)

    async def get_webhook(request: Request) -> Response:
        tenant, _ = await authenticate(host, signatures, request, READ)
        return JSONResponse(_webhook_or_404(host, request, tenant).to_json())

    async def patch_webhook(request: Request) -> Response:
        tenant, body = await authenticate(host, signatures, request, ADMIN)
        hook = _webhook_or_404(host, request, tenant)
        try:
            changes = check_patch(
                read_json(request, body),
                allow_http=host.allow_http,
                extra_prefixes=host.url_prefixes(),
            )
        except InvalidRequest as e:
            raise Problem(400, str(e)) from e
        updated = host.state.update_webhook(hook.id, changes, host.now_stamp())
        return JSONResponse(updated.to_json())

    async def delete_webhook(request: Request) -> Response:
        tenant, _ = await authenticate(host, signatures, request, ADMIN)
        hook = _webhook_or_404(host, request, tenant)
        host.state.delete_webhook(hook.id)
        return Response(status_code=204)

    async def test_webhook(request: Request) -> Response:
        tenant, _ = await authenticate(host, signatures, request, ADMIN)
        hook = _webhook_or_404(host, request, tenant)
        spec = {"type": TEST_EVENT_TYPE, "object": {"webhook_id": hook.id, "test": True}}
        host.emit_events(spec, client_id=tenant.client_id, webhook_id=hook.id)
        return Response(status_code=202)

    return [
        Route("/auth/token", token, methods=["POST"]),
        Route("/auth/verify_keys", verify_keys, methods=["GET"]),
        Route("/webhooks", list_webhooks, methods=["GET"]),
        Route("/webhooks", create_webhook, methods=["POST"]),
        Route("/webhooks/{webhook_id}", get_webhook, methods=["GET"]),
        Route("/webhooks/{webhook_id}", patch_webhook, methods=["PATCH"]),
        Route("/webhooks/{webhook_id}", delete_webhook, methods=["DELETE"]),
        Route("/webhooks/{webhook_id}/test", test_webhook, methods=["POST"]),
    ]


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _loopback_only(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        if not _is_loopback(request.client.host if request.client else ""):
            raise Problem(403, "the control endpoints answer loopback clients only")
        return await handler(request)

    return guarded


async def _control_json(request: Request, default: Any = None) -> Any:
    body = await request.body()
    if not body:
        return default
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Problem(400, "the body is not valid JSON") from e


def _tenant_json(tenant: Tenant) -> dict[str, str]:
    return {
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
        "key_id": tenant.key_id,
        "private_key_pem": tenant.private_key_pem(),
    }


def _control_routes(host: Host) -> list[BaseRoute]:
    async def emit(request: Request) -> Response:
        specs = await _control_json(request)
        try:
            events = host.emit_events(specs, client_id=request.query_params.get("client_id"))
        except ValueError as e:
            raise Problem(400, str(e)) from e
        return JSONResponse(events, status_code=201)

    async def rotate(request: Request) -> Response:
        doc = await _control_json(request, {})
        overlap = doc.get("overlap") if isinstance(doc, dict) else None
        if overlap is not None and (
            isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or overlap < 0
        ):
            raise Problem(400, "overlap must be a number of seconds >= 0")
        key = host.rotate_keys(overlap)
        return JSONResponse({"kid": key.key_id, **host.state.jwks(host.monotonic())})

    async def verify_keys(request: Request) -> Response:
        return JSONResponse(host.state.jwks(host.monotonic()))

    async def deliveries(request: Request) -> Response:
        webhook_id = request.query_params.get("webhook_id")
        found = [d.to_json() for d in host.state.deliveries() if webhook_id in (None, d.webhook_id)]
        return JSONResponse(found)

    async def tamper(request: Request) -> Response:
        doc = await _control_json(request, {})
        if not isinstance(doc, dict):
            raise Problem(400, "the body must be a JSON object")
        try:
            host.state.add_tamper(Tamper(doc.get("kind", "body"), doc.get("webhook_id")))
        except ValueError as e:
            raise Problem(400, str(e)) from e
        return JSONResponse({"kind": doc.get("kind", "body")}, status_code=202)

    async def tenants(request: Request) -> Response:
        if request.method == "POST":
            return JSONResponse(_tenant_json(host.state.add_tenant()), status_code=201)
        return JSONResponse([_tenant_json(t) for t in host.state.tenants()])

    async def webhooks(request: Request) -> Response:
        return JSONResponse(
            [{**w.to_json(), "client_id": w.client_id} for w in host.state.webhooks()]
        )

    return [
        Route("/_sandbox/events", _loopback_only(emit), methods=["POST"]),
        Route("/_sandbox/rotate_keys", _loopback_only(rotate), methods=["POST"]),
        Route("/_sandbox/verify_keys", _loopback_only(verify_keys), methods=["GET"]),
        Route("/_sandbox/deliveries", _loopback_only(deliveries), methods=["GET"]),
        Route("/_sandbox/tamper", _loopback_only(tamper), methods=["POST"]),
        Route("/_sandbox/tenants", _loopback_only(tenants), methods=["GET", "POST"]),
        Route("/_sandbox/webhooks", _loopback_only(webhooks), methods=["GET"]),
    ]


def create_app(host: Host, extra_routes: Sequence[BaseRoute] = ()) -> ASGIApp:
    """The emulator's ASGI app: API routes, control routes and ``extra_routes``."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        response = problem_response(request, exc.status, exc.detail)
        response.headers.update(exc.headers)
        return response

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = problem_response(request, exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_error(request: Request, exc: Exception) -> Response:
        return problem_response(request, 500, "internal error")

    app = Starlette(
        routes=[*_api_routes(host), *_control_routes(host), *extra_routes],
        exception_handlers={Problem: on_problem, HTTPException: on_http, Exception: on_error},
    )
    return RequestIdMiddleware(app)
