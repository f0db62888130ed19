"""Pure decoders: message bytes → validated Arrow rows + rejections with a reason code.

No Kafka, no lake, no filesystem: the ingest worker, the live app, the simulator's checks and
the benchmarks all call these with plain bytes and timestamps.
"""
