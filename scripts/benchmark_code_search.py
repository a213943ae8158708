#!/usr/bin/env python
"""Code-search settings (grid resolution, rays per candidate): nid_nerf/benchmarks/code_search.py."""

from nid_nerf.benchmarks.code_search import main

if __name__ == "__main__":
    main()
