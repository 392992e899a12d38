"""What every HTTP request of the worker's web port and of the collector passes through."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)


@web.middleware
async def answer_failures(request: web.Request, handler) -> web.StreamResponse:
    """A handler's unexpected exception becomes a JSON 500 answered by the app and one log line (scrubbed and
    collapsed, see :mod:`stream.logs`) instead of aiohttp's traceback with the request's text."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - the last resort of every handler
        route = getattr(request.match_info.route.resource, "canonical", "?")
        log.error("%s %s failed: %s", request.method, route, type(exc).__name__, exc_info=True)
        return web.json_response({"error": f"internal error ({type(exc).__name__})"}, status=500)
