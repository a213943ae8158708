"""Benchmarks and viewer checks: run any nerfstudio method for a fixed budget in one process, time it, score it."""
