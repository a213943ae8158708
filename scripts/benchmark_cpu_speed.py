#!/usr/bin/env python
"""CPU speed benchmark (render path, training throughput, threads); see nid_nerf/benchmarks/cpu_speed.py.

    python scripts/benchmark_cpu_speed.py --data data/bench200c/spot --render-config RUN/config.yml ...
"""

import sys

from nid_nerf.benchmarks.cpu_speed import main

if __name__ == "__main__":
    sys.exit(main())
