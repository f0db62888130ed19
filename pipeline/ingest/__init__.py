"""The hot path's worker: Kafka → codec → lake, exactly once (rows and offsets in one commit)."""
