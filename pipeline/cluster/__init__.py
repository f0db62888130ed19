"""Production-shaped services on one machine, for development and tests: a three-node Kafka
cluster, PostgreSQL for the lake's catalog and S3Proxy for its data (``anpr cluster``)."""
