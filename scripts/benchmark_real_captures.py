#!/usr/bin/env python
"""Real-capture benchmark (DTU scan24, maryrose, fox); see nid_nerf/benchmarks/real_captures.py.

    python scripts/benchmark_real_captures.py --scenes dtu maryrose fox --seconds 600
"""

import sys

from nid_nerf.benchmarks.real_captures import main

if __name__ == "__main__":
    sys.exit(main())
