"""Start-up time: `chirp-jobs --help` and `chirp-jobs validate` of one file.

Baselines are Python processes that only import what the command needs at least:
click for `--help` (target: at most 1.5 times), and click, yaml and jsonschema for
`validate` (target: at most 1.2 times). Each figure is the median of many runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import CHIRP_JOBS, median_time, ratio_line, run_timed

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


def median_seconds(command: list[str], repeats: int) -> float:
    run_timed(command)  # a warm-up run fills the page cache
    return median_time(lambda: run_timed(command)[0], repeats)


def compare(
    name: str, ours: list[str], baseline: list[str], target: float, repeats: int
) -> None:
    ours_seconds = median_seconds(ours, repeats)
    baseline_seconds = median_seconds(baseline, repeats)
    ratio = ours_seconds / baseline_seconds
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
    parser.add_argument("--repeats", type=int, default=21, help="runs of each; median")
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
