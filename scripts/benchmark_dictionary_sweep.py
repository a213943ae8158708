#!/usr/bin/env python
"""Dictionary size sweep (issue #4) over K experts and top-k; see nid_nerf/benchmarks/dictionary_sweep.py."""

from nid_nerf.benchmarks.dictionary_sweep import main

if __name__ == "__main__":
    main()
