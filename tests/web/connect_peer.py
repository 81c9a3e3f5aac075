"""The reference peer of the web acceptance tests: connectrpc on uvicorn serving
tests/web/services.py (helloworld + routeguide), with CORS for the page's origin.

python -m tests.web.connect_peer --port 8080 --cors-origin http://127.0.0.1:9000

CORS is not part of connectrpc; the ASGI middleware below answers with ``gmf.web.cors`` (so the
browser tests also check that policy against a real browser).
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from connect_gen.helloworld_connect import GreeterASGIApplication  # importable: see tests/web/__init__.py
from connect_gen.route_guide_connect import RouteGuideASGIApplication

from gmf.web.cors import CorsPolicy
from tests.web.services import RouteGuideServicer, WebGreeter, connect_service


class Router:
    """Dispatch by service path prefix (connectrpc's apps are one service each)."""

    def __init__(self, apps: list[Any]) -> None:
        self._apps = {app.path: app for app in apps}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            service = "/" + scope["path"].lstrip("/").split("/", 1)[0]
            app = self._apps.get(service)
            if app is not None:
                await app(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})


class Cors:
    def __init__(self, app: Any, policy: CorsPolicy) -> None:
        self._app = app
        self._policy = policy

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = scope["headers"]
        if self._policy.is_preflight(scope["method"].encode(), headers):
            answer = self._policy.preflight(headers)
            await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
            await send({"type": "http.response.body", "body": b""})
            return
        origin = next((v for k, v in headers if k == b"origin"), None)
        extra = self._policy.response_headers(origin)

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start" and extra:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self._app(scope, receive, send_with_cors)


def make_app(cors_origins: list[str]) -> Any:
    app: Any = Router([GreeterASGIApplication(connect_service(WebGreeter())),
                       RouteGuideASGIApplication(connect_service(RouteGuideServicer()))])
    if cors_origins:
        app = Cors(app, CorsPolicy(cors_origins))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cors-origin", action="append", default=[])
    args = parser.parse_args()
    config = uvicorn.Config(make_app(args.cors_origin), host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    print(f"connectrpc peer listening on {args.host}:{args.port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
