"""`personastream bench`: the performance harness of issue 5 (see BENCHMARKS.md).

* :mod:`stream.bench.workload` — the input: UCI-replayed visits plus synthetic click/scroll/dwell visits;
* :mod:`stream.bench.rig` — a fresh local broker, per-run topic names and worker subprocesses;
* :mod:`stream.bench.kafka` — measurements through the broker (ceiling, throughput, latency, scale);
* :mod:`stream.bench.offline` — measurements without Kafka (scoring cost, state memory, profile);
* :mod:`stream.bench.report` — BENCHMARKS.md and the JSON file;
* :mod:`stream.bench.run` — the phases in order.
"""
