#!/usr/bin/env python
"""Residual ray sampler against uniform sampling, in one run; see nid_nerf/benchmarks/sampler_variants.py.

    python scripts/benchmark_sampler.py --steps 1500 --eval-every 100
    python scripts/benchmark_sampler.py --steps 20 --eval-every 10 --scenes spot --output /tmp/b.md  # smoke
"""

from nid_nerf.benchmarks.sampler_variants import main

if __name__ == "__main__":
    main()
