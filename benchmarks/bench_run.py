"""Run calls against the sandbox served on loopback, with no rate limit enforced.

`chirp-jobs run`, with its results file, is compared with two baselines measured in
the same run, which send the same bodies to the same server. The first is a bare
`httpx.AsyncClient` loop at the same concurrency with no results file (target: at
least its requests per second). The second is a shell loop of one `curl` per call
(target: at least 10 times its requests per second). Each client runs as a process
of its own, and the sandbox runs as `chirp-jobs sandbox`. The three run one after
another in each round, and the ratios printed are the medians of the rounds', so a
burst of load on a shared machine moves one round rather than the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import (
    CHIRP_JOBS,
    TEST_KEY,
    outcome_counts,
    ratio_line,
    run_timed,
    sandbox_process,
    write_recipient_job,
)

HTTPX_TARGET = 1.0
CURL_TARGET = 10.0
# Bodies of the same shape as the plan's: from, to, channels and metadata with a
# plan key and a run id.
HTTPX_LOOP = """
import asyncio, sys, httpx
base_url, key = sys.argv[1], sys.argv[2]
calls, concurrency = int(sys.argv[3]), int(sys.argv[4])

def bodies():
    for i in range(calls):
        yield {"from": "+15550100100", "to": f"+1555{i:07d}", "fromChannel": "pstn",
               "toChannel": "pstn", "metadata": {"purpose": "benchmark",
               "chirpJobsKey": f"bench-run:{i:016x}:0", "chirpJobsRun": "bench"}}

async def worker(client, source, statuses):
    for body in source:
        response = await client.post("/v1/calls", json=body)
        statuses.append(response.status_code)

async def main():
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency
    )
    headers = {"Authorization": f"Bearer {key}"}
    statuses = []
    source = bodies()
    client = httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits)
    async with client:
        workers = [worker(client, source, statuses) for _ in range(concurrency)]
        await asyncio.gather(*workers)
    if statuses.count(201) != calls:
        sys.exit(f"expected {calls} responses 201, got {len(statuses)}")

asyncio.run(main())
"""


def curl_loop(base_url: str, calls: int) -> list[str]:
    body = json.dumps(
        {
            "from": "+15550100100",
            "to": "+15550100131",
            "fromChannel": "pstn",
            "toChannel": "pstn",
            "metadata": {"purpose": "benchmark"},
        }
    )
    script = (
        f"for i in $(seq {calls}); do curl -sS -o /dev/null --fail "
        f"-H 'Authorization: Bearer {TEST_KEY}' -H 'Content-Type: application/json' "
        f"--data '{body}' {base_url}/v1/calls || exit 1; done"
    )
    return ["bash", "-c", script]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--curl-calls", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of the three clients, one after another; the median counts",
    )
    args = parser.parse_args()
    curl = shutil.which("curl") if args.curl_calls else None

    env = {**os.environ, "CHIRP_API_KEY": TEST_KEY}
    # The runner spreads its requests by the X-RateLimit-* headers, so the
    # sandbox reports a limit far above what a benchmark can send.
    unlimited = sandbox_process("--rate-limit", "100000000")
    rounds: list[tuple[float, float, float | None]] = []
    with tempfile.TemporaryDirectory() as temporary, unlimited as base_url:
        folder = Path(temporary)
        job = write_recipient_job(folder / "run.yaml", "bench-run", args.calls)
        loop = [
            sys.executable,
            "-c",
            HTTPX_LOOP,
            base_url,
            TEST_KEY,
            str(args.calls),
            str(args.concurrency),
        ]
        for number in range(args.rounds):
            results = folder / f"results-{number}.jsonl"
            ours = [
                CHIRP_JOBS,
                "run",
                str(job),
                "-q",
                "--base-url",
                base_url,
                "--rate",
                "1000000",
                "--concurrency",
                str(args.concurrency),
                "--results",
                str(results),
            ]
            chirp_rate = args.calls / run_timed(ours, env=env)[0]
            counts = outcome_counts(results)
            if counts != {"created": args.calls}:
                sys.exit(f"error: expected {args.calls} created outcomes, got {counts}")
            httpx_rate = args.calls / run_timed(loop)[0]
            curl_rate = None
            if curl:
                curl_seconds = run_timed(curl_loop(base_url, args.curl_calls))[0]
                curl_rate = args.curl_calls / curl_seconds
            rounds.append((chirp_rate, httpx_rate, curl_rate))
            curl_text = "-" if curl_rate is None else f"{curl_rate:,.0f}"
            print(
                f"round {number + 1}: chirp-jobs {chirp_rate:,.0f}, httpx loop "
                f"{httpx_rate:,.0f}, curl loop {curl_text} requests/s"
            )

    print(
        f"calls: {args.calls:,} at concurrency {args.concurrency}, "
        f"median of {args.rounds} rounds"
    )
    print(f"chirp-jobs run (results file on): {_median(rounds, 0):,.0f} requests/s")
    print(f"bare httpx.AsyncClient loop:      {_median(rounds, 1):,.0f} requests/s")
    ratio = statistics.median(chirp / httpx for chirp, httpx, _ in rounds)
    print(
        ratio_line(
            "chirp-jobs over httpx loop",
            ratio,
            f">= {HTTPX_TARGET}",
            ratio >= HTTPX_TARGET,
        )
    )
    if not curl:
        reason = "--curl-calls 0" if not args.curl_calls else "curl not found"
        print(f"curl loop: skipped ({reason})")
        return
    print(
        f"curl loop ({args.curl_calls:,} calls):           "
        f"{_median(rounds, 2):,.0f} requests/s"
    )
    ratio = statistics.median(chirp / (curl or 1) for chirp, _, curl in rounds)
    print(
        ratio_line(
            "chirp-jobs over curl loop",
            ratio,
            f">= {CURL_TARGET}",
            ratio >= CURL_TARGET,
        )
    )


def _median(rounds: list[tuple[float, float, float | None]], column: int) -> float:
    return statistics.median(row[column] or 0.0 for row in rounds)


if __name__ == "__main__":
    main()
