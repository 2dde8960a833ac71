"""Start-up time: `chirp-jobs --help` and `chirp-jobs validate` of one file.

Baselines are Python processes that only import what the command needs at least:
click for `--help` (target: at most 1.5 times), and click, yaml and jsonschema for
`validate` (target: at most 1.2 times). The command and its baseline alternate, and
each ratio is the median of the ratios of many such pairs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _common import CHIRP_JOBS, ratio_line, run_timed

HELP_TARGET = 1.5
VALIDATE_TARGET = 1.2
ONE_JOB = """\
version: 1
name: start-up
defaults:
  from: "+15550100100"
calls:
  - to: ["+15550100131", "+15550100132"]
    metadata: {purpose: start-up}
"""


def compare(
    name: str, ours: list[str], baseline: list[str], target: float, repeats: int
) -> None:
    # A warm-up run of each fills the page cache. Then the two alternate, so a
    # change in the machine's load moves both sides alike, and the ratio is the
    # median of the pairs' ratios.
    run_timed(ours)
    run_timed(baseline)
    pairs = [(run_timed(ours)[0], run_timed(baseline)[0]) for _ in range(repeats)]
    ratio = statistics.median(mine / theirs for mine, theirs in pairs)
    ours_seconds = statistics.median(mine for mine, _ in pairs)
    baseline_seconds = statistics.median(theirs for _, theirs in pairs)
    print(
        f"{name}: {ours_seconds * 1000:.0f} ms, "
        f"baseline {baseline_seconds * 1000:.0f} ms"
    )
    print(
        ratio_line(
            f"  {name} over its baseline", ratio, f"<= {target}", ratio <= target
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=21, help="pairs of runs; median")
    args = parser.parse_args()

    python = sys.executable
    compare(
        "chirp-jobs --help",
        [CHIRP_JOBS, "--help"],
        [python, "-c", "import click"],
        HELP_TARGET,
        args.repeats,
    )
    with tempfile.TemporaryDirectory() as temporary:
        job = Path(temporary) / "one.yaml"
        job.write_text(ONE_JOB, encoding="utf-8")
        compare(
            "chirp-jobs validate ONE_FILE",
            [CHIRP_JOBS, "validate", str(job)],
            [python, "-c", "import click, yaml, jsonschema"],
            VALIDATE_TARGET,
            args.repeats,
        )


if __name__ == "__main__":
    main()
