#!/usr/bin/env python
"""Few-view benchmark (issue #4): NID solve + refine against scratch; see nid_nerf/benchmarks/fewview.py."""

from nid_nerf.benchmarks.fewview import main

if __name__ == "__main__":
    main()
