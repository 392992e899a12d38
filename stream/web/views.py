"""The worker's web views (Faust web, ``--web-port``): the event collector, the visit lookup, the
tracker script, Prometheus metrics and status. Found by autodiscovery."""

from __future__ import annotations

from faust.types.web import ResourceOptions
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.privacy import opaque_problem
from stream import metrics
from stream.app import app, dead_letters, events, runtime, settings, visits
from stream.delivery import deliver
from stream.state_table import read_states
from stream.web.collector import TRACKER, BodyError, RateLimiter, Writers, receive, reply

CORS = {origin: ResourceOptions(allow_credentials=False, expose_headers=(), allow_headers=("Content-Type",),
                                max_age=600, allow_methods=("GET", "POST")) for origin in settings.origins}
"""Browser pages of these origins may call the collector and the lookup (``ALLOWED_ORIGINS``)."""


@app.page("/metrics")
async def prometheus_metrics(web, request):
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/status")
async def status(web, request):
    worker = runtime()
    return web.json({
        "intent_model_version": worker.processor.scorer.intent.version,
        "persona_model_version": worker.personas.serving.version,
        "persona_model_ready": worker.persona_feed.ready.is_set(),
        "persona_learned_pending": worker.personas.learner.learned,
        "partitions": sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == events.get_topic_name()),
        "pages": {"catalog": len(worker.pages.catalog), "observed": len(worker.pages.observed),
                  "ready": worker.page_feed.ready.is_set()},
    })


@app.page("/tracker.js", cors_options=CORS)
class Tracker(View):
    """The browser tracker (``stream/web/static/tracker.js``)."""

    async def get(self, request: Request) -> Response:
        return self.bytes(TRACKER.read_bytes(), content_type="application/javascript",
                          headers={"Cache-Control": "max-age=300"})


@app.page("/collect", cors_options=CORS)
class Collect(View):
    """``POST /collect``: a JSON array or NDJSON of events -> 202 {"accepted": n, "rejected": [...]}."""

    writers = Writers(frozenset(settings.origins), settings.allow_no_origin)
    limiter = RateLimiter(per_s=settings.collect_requests_per_s, burst=5 * settings.collect_requests_per_s)

    async def post(self, request: Request) -> Response:
        try:
            result = await receive(request, self.writers, self.limiter)
        except BodyError as exc:
            metrics.COLLECT_REFUSED.labels(str(exc.status)).inc()
            return self.json({"error": exc.reason}, status=exc.status)
        await deliver([(events.get_topic_name(), key, value, None) for key, value in result.accepted]
                      + [(dead_letters.get_topic_name(), None, letter.model_dump_json().encode(), None)
                         for letter in result.dead_letters])
        metrics.COLLECTED.inc(len(result.accepted))
        metrics.DEAD_LETTERS.inc(len(result.dead_letters))
        return self.json(reply(result), status=202)


@app.page("/visits/{session_id}", cors_options=CORS)
class Visit(View):
    """``GET /visits/{session_id}``: the newest PersonaEvent of a session, from whichever worker owns it."""

    async def get(self, request: Request, session_id: str) -> Response:
        problem = opaque_problem(session_id, 128)
        if problem:
            return self.json({"error": f"session_id must be {problem}"}, status=400)
        try:
            return await self.lookup(request, session_id=session_id)
        except TypeError:  # the producer has no metadata of the visits changelog yet (worker starting)
            return self.json({"error": "the worker is starting; try again"}, status=503, headers={"Retry-After": "1"})

    @app.table_route(table=visits, match_info="session_id")
    async def lookup(self, request: Request, session_id: str) -> Response:
        found = read_states(visits).get(session_id.encode())
        if found is None:
            return self.json({"error": "no PersonaEvent for this session (unknown, not yet scored, or expired)"},
                             status=404)
        return self.bytes(found, content_type="application/json")
