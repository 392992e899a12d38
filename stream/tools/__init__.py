"""Tools around the pipeline that no worker loads: the local development broker, replay, offline
scoring, the demo and tail."""
