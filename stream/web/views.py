"""The worker's web views (Faust web, ``--web-port``): Prometheus metrics and status. Found by autodiscovery."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.app import app, events, runtime


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
