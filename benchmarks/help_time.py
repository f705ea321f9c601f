"""Wall time of `python -m interp_pipeline --help` (goal: at most 1.5 s on the 2-core machine).

Baseline in the same run: a bare interpreter start (`python -c pass`), so the ratio
says how much of the time is ours. Usage: python benchmarks/help_time.py [repeats]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

GOAL_SECONDS = 1.5


def wall(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    wall(["-m", "interp_pipeline", "--help"])  # warm the file cache
    baseline = statistics.median(wall(["-c", "pass"]) for _ in range(repeats))
    help_time = statistics.median(wall(["-m", "interp_pipeline", "--help"]) for _ in range(repeats))
    print(f"python -c pass:                 {baseline:.3f} s (median of {repeats})")
    print(f"python -m interp_pipeline --help: {help_time:.3f} s (median of {repeats})")
    print(f"ratio to bare interpreter:      {help_time / baseline:.1f}x")
    print(f"ratio to the 1.5 s goal:        {help_time / GOAL_SECONDS:.2f} ({'met' if help_time <= GOAL_SECONDS else 'NOT met'})")


if __name__ == "__main__":
    main()
