"""Run every benchmark in turn; each prints its own table (ratios against a same-process baseline).

Usage: python benchmarks/run_all.py [name ...]
(names: eras, features, long_segments, catalogue, tsfresh_stage, greenhouse, sink, scoped_runs,
prefect_overhead)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = [
    "eras",
    "features",
    "long_segments",
    "catalogue",
    "tsfresh_stage",
    "greenhouse",
    "sink",
    "scoped_runs",
    "prefect_overhead",
]


def main(argv: list[str]) -> int:
    names = argv or ALL
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {ALL}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"\n=== bench_{name} ===", flush=True)
        began = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / f"bench_{name}.py")], check=False)
        print(f"(bench_{name}: {time.perf_counter() - began:.0f} s, exit {done.returncode})")
        status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
