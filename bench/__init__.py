"""Benchmarks: each script measures the project against its baseline in one run (`make bench`)."""
