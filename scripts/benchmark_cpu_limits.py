#!/usr/bin/env python
"""The physical limit of a training step and a render on this CPU; see nid_nerf/benchmarks/cpu_limits.py.

    python scripts/benchmark_cpu_limits.py                                  # docs/cpu_limits.md (about 3 minutes)
    python scripts/benchmark_cpu_limits.py --quick --output /tmp/cl.md      # smoke run (under a minute)
"""

from nid_nerf.benchmarks.cpu_limits import main

if __name__ == "__main__":
    main()
