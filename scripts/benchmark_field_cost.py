#!/usr/bin/env python
"""NID field cost per sample against K experts and top-k; see nid_nerf/benchmarks/field_cost.py.

    python scripts/benchmark_field_cost.py --threads 1 --allocator both --reps 3   # docs/field_cost.{md,json,png}
    python scripts/benchmark_field_cost.py --quick --output /tmp/fc.md             # smoke run (under a minute)
"""

from nid_nerf.benchmarks.field_cost import main

if __name__ == "__main__":
    main()
