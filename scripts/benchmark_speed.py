#!/usr/bin/env python
"""Speed benchmark of issue #2 (our field against nerfacto-torch, CPU); see nid_nerf/benchmarks/speed.py.

    nid-render-collection --family vases --count 1 --output data/bench
    python scripts/benchmark_speed.py --data data/bench/vases_0000 --seconds 300 --output docs/speed_benchmark.md
"""

import sys

from nid_nerf.benchmarks.speed import main

if __name__ == "__main__":
    sys.exit(main())
