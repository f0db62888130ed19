"""Benchmarks: programs that compare the pipeline against baselines in the same run."""
