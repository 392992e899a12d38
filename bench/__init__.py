"""`personastream bench`: the performance harness (see BENCHMARKS.md).

* :mod:`bench.workload` — the input: UCI-replayed visits plus synthetic click/scroll/dwell visits;
* :mod:`bench.rig` — a fresh local broker, per-run topic names and worker subprocesses;
* :mod:`bench.kafka` — measurements through the broker (ceiling, throughput, latency, scale);
* :mod:`bench.offline` — measurements without Kafka (scoring cost, state memory, profile);
* :mod:`bench.report` — BENCHMARKS.md and the JSON file;
* :mod:`bench.run` — the phases in order.
"""
