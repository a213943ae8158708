#!/usr/bin/env python
"""PSNR / SSIM of nid-field after fixed step budgets; see nid_nerf/benchmarks/quality.py.

    python scripts/benchmark_quality.py --budgets 250 1000 --output docs/quality.md
"""

from nid_nerf.benchmarks.quality import main

if __name__ == "__main__":
    main()
