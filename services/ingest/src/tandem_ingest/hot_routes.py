"""The webhook routes, served ahead of FastAPI's per-request machinery.

A delivery through FastAPI passes its telemetry, body-limit, exception and exit-stack middleware, the router's
scan of every route and its request handler: about a fifth of ingest's CPU per webhook, for nothing these routes
use. `IngestApp` answers a hot route's methods itself, inside the same error handling (an unexpected exception is
a plain 500, as before) and the same metrics middleware; everything else (other methods, 405s, health, metrics,
the lifespan) is FastAPI's as before. The handlers are the very ones the FastAPI routes call.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tandem_shared.metrics import IngestMetricsMiddleware

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class HotRoute:
    """`path` in FastAPI's syntax (`{name}` is one path segment); `handler(request, **path_params)`."""

    path: str
    methods: frozenset[str]
    handler: Handler

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


class IngestApp(FastAPI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hot: list[tuple[re.Pattern[str], frozenset[str], Handler]] = []
        # In FastAPI's order: the error handler outside the metrics, so a crash is a 500 but not a counted answer.
        self._hot_stack = ServerErrorMiddleware(IngestMetricsMiddleware(self._serve_hot))

    def add_hot_routes(self, routes: Sequence[HotRoute]) -> None:
        self._hot.extend((route.pattern(), route.methods, route.handler) for route in routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.root_path:
            path = scope["path"]
            for pattern, methods, handler in self._hot:
                match = pattern.match(path)
                if match is not None and scope["method"] in methods:
                    scope["app"] = self
                    scope["path_params"] = match.groupdict()
                    scope["tandem.handler"] = handler
                    await self._hot_stack(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    @staticmethod
    async def _serve_hot(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await scope["tandem.handler"](request, **scope["path_params"])
        await response(scope, receive, send)
