"""
rocketd's benchmark suite: the same workloads against rocketd and nchan.

Run everything with C{.venv/bin/python benchmarks/run.py} (see C{benchmarks/README.md}).
"""
