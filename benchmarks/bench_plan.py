"""Plan a job of many planned calls as JSON lines: `chirp-jobs plan --format json`.

The baseline is a plain loop of `json.dumps` over the same request bodies, written
to the same sink, in a Python process of its own. The time ratio is chirp-jobs'
wall time over the baseline's (target: at most 2). Peak RSS is then measured for
plans of growing size from the same recipient list, which must stay flat.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _common import CHIRP_JOBS, median_time, ratio_line, run_timed, write_recipient_job

TARGET = 2.0
# The same bodies as the plan's, keys included, dumped one per line.
BASELINE = """
import json, sys
recipients, repeat = int(sys.argv[1]), int(sys.argv[2])
out = open(sys.argv[3], "w", encoding="utf-8")
for i in range(recipients):
    body = {"from": "+15550100100", "to": f"+1555{i:07d}", "fromChannel": "pstn",
            "toChannel": "pstn", "metadata": {"purpose": "benchmark"}}
    for r in range(repeat):
        key = f"bench-plan:0123456789abcdef:{r}"
        request = {**body, "metadata": {**body["metadata"], "chirpJobsKey": key}}
        out.write(json.dumps(request) + "\\n")
out.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rss-recipients", type=int, default=1_000)
    parser.add_argument(
        "--rss-repeats", default="10,100,1000", help="repeat counts of the RSS series"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; median")
    parser.add_argument("--output", default=os.devnull, help="where lines are written")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        job = write_recipient_job(
            folder / "plan.yaml", "bench-plan", args.recipients, args.repeat
        )
        planned = args.recipients * args.repeat
        ours = [CHIRP_JOBS, "plan", "--format", "json", str(job)]
        with open(args.output, "w") as sink:
            chirp_seconds = median_time(
                lambda: run_timed(ours, stdout=sink)[0], args.repeats
            )
        baseline = [
            sys.executable,
            "-c",
            BASELINE,
            str(args.recipients),
            str(args.repeat),
            args.output,
        ]
        baseline_seconds = median_time(lambda: run_timed(baseline)[0], args.repeats)
        ratio = chirp_seconds / baseline_seconds
        print(
            f"planned calls: {planned:,} "
            f"({args.recipients:,} recipients x {args.repeat})"
        )
        print(f"chirp-jobs plan --format json: {chirp_seconds:.2f} s")
        print(f"json.dumps loop:               {baseline_seconds:.2f} s")
        print(
            ratio_line(
                "time over the json.dumps loop", ratio, f"<= {TARGET}", ratio <= TARGET
            )
        )

        print(f"peak RSS with {args.rss_recipients:,} recipients:")
        for repeat in (int(text) for text in args.rss_repeats.split(",")):
            job = write_recipient_job(
                folder / f"rss-{repeat}.yaml", "bench-rss", args.rss_recipients, repeat
            )
            command = [CHIRP_JOBS, "plan", "--format", "json", str(job)]
            with open(os.devnull, "w") as sink:
                _, rss_kib, _ = run_timed(command, stdout=sink)
            count = args.rss_recipients * repeat
            print(f"  {count:>10,} planned calls: {rss_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
