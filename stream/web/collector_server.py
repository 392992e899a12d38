"""``personastream collector``: the HTTP collector alone, for sites that scale ingestion apart from
processing. It answers ``POST /collect`` and ``GET /tracker.js`` exactly as a worker's web port does
(same validation, limits and CORS) and produces to the events topic; it consumes nothing."""

from __future__ import annotations

import asyncio
import logging

import aiohttp_cors
from aiohttp import web
from aiokafka import AIOKafkaProducer

from stream.config import Settings
from stream.logs import guard_log_lines
from stream.web.collector import MAX_BODY_BYTES, TRACKER, BodyError, RateLimiter, Writers, receive, reply
from stream.web.guard import answer_failures


def build(conf: Settings) -> web.Application:
    """The collector's aiohttp application; its producer starts and stops with it."""
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1, middlewares=[answer_failures])
    writers = Writers(frozenset(conf.origins), conf.allow_no_origin)
    limiter = RateLimiter(per_s=conf.collect_requests_per_s, burst=5 * conf.collect_requests_per_s)

    async def producer(app: web.Application):
        app["producer"] = AIOKafkaProducer(bootstrap_servers=conf.bootstrap, linger_ms=5, acks="all",
                                           request_timeout_ms=int(conf.produce_timeout_s * 1000))
        await app["producer"].start()
        for topic in (conf.events_topic, conf.dlq_topic):  # tracked for metadata refreshes (see stream.delivery)
            await app["producer"].client.add_topic(topic)
        yield
        await app["producer"].stop()

    async def collect(request: web.Request) -> web.Response:
        try:
            result = await receive(request, writers, limiter)
        except BodyError as exc:
            return web.json_response({"error": exc.reason}, status=exc.status)
        send = request.app["producer"].send
        try:
            deliveries = [await send(conf.events_topic, value, key=key) for key, value in result.accepted]
            deliveries += [await send(conf.dlq_topic, letter.model_dump_json().encode())
                           for letter in result.dead_letters]
            await asyncio.gather(*deliveries)
        except Exception as exc:  # noqa: BLE001 - Kafka unreachable: the client may send again
            return web.json_response({"error": f"events not stored: {type(exc).__name__}"}, status=503)
        return web.json_response(reply(result), status=202)

    async def tracker(request: web.Request) -> web.Response:
        return web.Response(body=TRACKER.read_bytes(), content_type="application/javascript",
                            headers={"Cache-Control": "max-age=300"})

    app.cleanup_ctx.append(producer)
    cors = aiohttp_cors.setup(app, defaults={origin: aiohttp_cors.ResourceOptions(
        allow_headers=("Content-Type",), allow_methods=("GET", "POST"), max_age=600) for origin in conf.origins})
    cors.add(app.router.add_post("/collect", collect))
    cors.add(app.router.add_get("/tracker.js", tracker))
    return app


def serve(conf: Settings, port: int) -> None:
    """Run the collector until it is stopped; no access log, other lines collapsed and scrubbed."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    guard_log_lines()
    web.run_app(build(conf), host="127.0.0.1", port=port, print=None, access_log=None)
