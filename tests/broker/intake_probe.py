"""A Faust worker on the real broker whose only task takes batches from the intake of one topic, slowly,
and interrupts its own reading the way a rebalance does; prints what it was handed (for test_intake.py).

    python -m tests.broker.intake_probe BOOTSTRAP TOPIC APP_ID RECORDS_PER_PARTITION ACTION DATADIR

ACTION, done after the 3rd, 10th and 20th batch:
- ``rebalance``: Faust's sequence: stop flow, clear the buffers, seek to the committed offsets, resume;
- ``clear``: stop flow, clear the buffers, resume, without a seek;
- ``seek``: seek to the committed offsets while records flow.

Once every record was handed over, prints one line, "handed: " and JSON: partition -> offsets in the order handed over,
and how many records the clears dropped, how many seeks back the consumer made.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import faust
import orjson

from stream import metrics
from stream.intake import App, ack

ACT_AFTER_BATCHES = (3, 10, 20)


def main(bootstrap: str, topic_name: str, app_id: str, per_partition: int, action: str, datadir: str) -> None:
    app = App(app_id, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False, datadir=datadir,
              consumer_auto_offset_reset="earliest", broker_commit_interval=0.2, broker_max_poll_records=200,
              key_serializer="raw", value_serializer="raw")
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    intake = app.intake(topic, maxsize=300)

    @app.task
    async def take_slowly() -> None:
        consumer = app.consumer
        handed: dict[int, list[int]] = {}
        cleared = batches = 0
        while True:
            batch = await intake.take(40, within=0.02)
            for message in batch:
                handed.setdefault(message.partition, []).append(message.offset)
            ack(consumer, batch)
            intake.finish()
            batches += 1
            if batches in ACT_AFTER_BATCHES:
                if action in ("rebalance", "clear"):
                    consumer.stop_flow()
                    app.flow_control.suspend()
                    cleared += len(intake)
                    app.flow_control.clear()
                    await asyncio.sleep(0.3)
                    if action == "rebalance":
                        await consumer.perform_seek()
                    app.flow_control.resume()
                    consumer.resume_flow()
                else:
                    await consumer.perform_seek()
            if len(handed) == 2 and all(max(offsets) == per_partition - 1 for offsets in handed.values()):
                report = {"handed": {str(p): o for p, o in handed.items()}, "cleared": cleared,
                          "batches": batches, "rewinds": metrics.REWINDS._value.get()}
                print(f"\nhanded: {orjson.dumps(report).decode()}", flush=True)
                os._exit(0)
            await asyncio.sleep(0.01)  # slower than the fetch: records wait in the buffer

    logging.basicConfig(level=logging.WARNING)
    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
