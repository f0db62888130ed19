"""Nightly maintenance: statistics, compaction, retention, physical purge and verification."""
